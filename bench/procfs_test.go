package bench

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"

	"github.com/kafkawal/kafkawal/internal/kafkatest"
)

// statusBytes returns a "kB" field of /proc/self/status (VmRSS, VmHWM) in
// bytes.
func statusBytes(field string) (int64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || name != field {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/self/status %s: %w", field, err)
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("/proc/self/status: no %s", field)
}

// procIO returns the fields of /proc/self/io (the whole process: every
// thread, live or exited).
func procIO() (map[string]int64, error) {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return nil, err
	}
	m := map[string]int64{}
	for _, line := range strings.Split(string(b), "\n") {
		name, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
			m[name] = n
		}
	}
	for _, k := range []string{"write_bytes", "cancelled_write_bytes", "syscw"} {
		if _, ok := m[k]; !ok {
			return nil, fmt.Errorf("/proc/self/io: no %s (kernel without task I/O accounting?)", k)
		}
	}
	return m, nil
}

// diskWrites returns the bytes this process has sent to the storage layer
// (/proc/self/io write_bytes) minus those it cancelled by truncating or
// deleting dirty pages before writeback (cancelled_write_bytes). Linux
// counts a page when it becomes dirty, so a 4 KiB page rewritten after each
// fsync counts 4 KiB each time: that is what the device writes too.
func diskWrites() (int64, error) {
	m, err := procIO()
	if err != nil {
		return 0, err
	}
	return m["write_bytes"] - m["cancelled_write_bytes"], nil
}

// writeCalls returns the number of write system calls (write, pwrite,
// writev, ...) this process has made.
func writeCalls() int64 {
	m, err := procIO()
	if err != nil {
		return -1
	}
	return m["syscw"]
}

// printConfig prints what the figures depend on as "key: value" lines,
// which go test -bench output and benchstat carry as configuration.
func printConfig() {
	broker := "embedded (kfake, in the benchmark process: it shares the CPU)"
	if kafkatest.Kind() == "real" {
		broker = "real (Apache Kafka 4.x, KRaft, one node, its own JVM on loopback)"
	}
	fmt.Printf("broker: %s\n", broker)
	fmt.Printf("full-size: %v\n", full())
	fmt.Printf("cores: %d\n", runtime.NumCPU())
	if mem, err := meminfoTotal(); err == nil {
		fmt.Printf("memory: %d GiB\n", (mem+1<<29)>>30)
	}
	fmt.Printf("wal-disk: %s\n", describeDisk(os.TempDir()))
}

func meminfoTotal() (int64, error) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("/proc/meminfo: no MemTotal")
}

// describeDisk names the filesystem and device dir is on, from
// /proc/self/mountinfo and sysfs.
func describeDisk(dir string) string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "unknown"
	}
	var best, fstype, source, majmin string
	for _, line := range strings.Split(string(b), "\n") {
		// id parent maj:min root mountpoint opts ... - fstype source superopts
		pre, post, ok := strings.Cut(line, " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if !ok || len(f) < 5 || len(g) < 2 {
			continue
		}
		mp := f[4]
		if (dir == mp || strings.HasPrefix(dir, strings.TrimSuffix(mp, "/")+"/")) && len(mp) >= len(best) {
			best, fstype, source, majmin = mp, g[0], g[1], f[2]
		}
	}
	if best == "" {
		return "unknown"
	}
	desc := fmt.Sprintf("%s on %s (mounted at %s, holding %s)", fstype, source, best, dir)
	if rot, err := os.ReadFile("/sys/dev/block/" + majmin + "/queue/rotational"); err == nil {
		desc += fmt.Sprintf(", rotational=%s", strings.TrimSpace(string(rot)))
	}
	return desc
}
