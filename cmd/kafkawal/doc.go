// Command kafkawal is the operator's tool for a kafkawal write-ahead log
// directory: what is in it, whether it is intact, and what the records
// say, while Kafka is down and the producer is still running.
//
//	kafkawal inspect DIR [--json]
//	kafkawal verify DIR
//	kafkawal dump DIR [--from SEQ] [--limit N] [--dead]
//	kafkawal ship DIR -X bootstrap.servers=HOST:PORT [-X key=value ...] [--remove]
//	kafkawal drill [flags]
//	kafkawal help [COMMAND]
//
// inspect, verify and dump only read. They never call wal.Open, take no
// lock (the lock holder is read from /proc/locks, not probed with
// flock(2)) and create, write or delete nothing, so they run beside a
// producer that holds DIR, and on a copy of DIR.
//
// ship is the exception: it delivers the backlog of a directory whose
// service will not open it again, so it opens DIR through the library
// (kafkawal.Open: the lock, torn-tail repair, a full checksum scan, the
// sender) and waits for the backlog to empty. It adds no delivery logic of
// its own; --remove checks, under DIR's lock, that nothing in DIR is the
// only copy of a record before deleting it.
//
// Exit status: 0 ok; 1 the command ran and found damage (verify: mid-log
// corruption, also when it lies in records already delivered; inspect:
// corruption in the last segment; dump: records it could not read) or, for
// ship, did not deliver everything (with the reason); 2 bad usage (dump
// --from past the next record), not a kafkawal directory, or an I/O error,
// with one line on stderr.
//
// # inspect --json and dump
//
// The JSON field names of inspect --json and dump are a stable interface
// for scripts, listed by 'kafkawal help inspect' and 'kafkawal help dump'
// (inspectHelp and dumpHelp).
package main
