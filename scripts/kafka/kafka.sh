#!/usr/bin/env bash
# kafka.sh: a single-node Apache Kafka 4.x (KRaft, combined broker+controller,
# loopback only) for kafkawal's real-broker test tier.
#
# The jars come from Maven Central through scripts/kafka/pom.xml; nothing is
# downloaded from anywhere else and nothing is written into the repository.
#
#   kafka.sh classpath
#       Resolve the broker's classpath once (mvn dependency:build-classpath) and
#       cache it in $KAFKAWAL_KAFKA_CACHE (default ~/.cache/kafkawal-kafka).
#       Prints the path of the classpath file. Fast when cached.
#
#   kafka.sh start --dir DIR --port P [--controller-port C] [--advertise HOST:PORT]
#                  [--auto-create true|false] [--partitions N] [--fresh]
#                  [--owner-pid PID] [--timeout SECONDS]
#                  [--listener NAME=PORT]... [--advertise-listener NAME]
#                  [--tls-dir TLS] [--scram USER:PASSWORD]... [--plain USER:PASSWORD]...
#                  [--authorizer]
#                  [--internal-port I] [--node-id N --join HOST:C --cluster-id ID]
#       Write DIR/server.properties, format DIR/data unless already formatted
#       (so a restart keeps the data; --fresh wipes it first), start the broker
#       in the background (output in DIR/broker.log, pid in DIR/broker.pid) and
#       wait until it has started and its port answers. With --owner-pid the
#       broker is SIGKILLed when that process is gone (a crashed test binary
#       does not leak a JVM). --timeout (default 90) bounds the whole command,
#       classpath resolution included. The controller port and the cluster id
#       are kept in DIR and reused on the next start when not given.
#       --internal-port gives the brokers a listener of their own to talk to
#       each other (INTERNAL), so that a fault proxy advertised to clients on
#       --advertise cuts clients off without cutting the cluster apart.
#       --join makes a broker-only node N that joins the controller at HOST:C
#       of the cluster --cluster-id (started with the same --internal-port
#       scheme): a cluster of several brokers.
#
#       Secure listeners (see docs/brokers.md), beside PLAINTEXT on --port:
#         --listener ssl=P             SSL, server certificate only
#         --listener mtls=P            SSL, client certificate required
#         --listener sasl_ssl=P        SASL_SSL, SCRAM-SHA-512
#         --listener sasl_plaintext=P  SASL_PLAINTEXT, PLAIN and SCRAM-SHA-512
#       --advertise applies to the PLAINTEXT listener unless
#       --advertise-listener names another one (the one behind a proxy).
#       --tls-dir TLS holds ca.pem (the CAs the broker trusts for client
#       certificates) and broker.pem (an unencrypted PKCS#8 key followed by
#       the certificate chain); required by ssl, mtls and sasl_ssl.
#       --scram adds a SCRAM-SHA-512 credential when DIR/data is formatted
#       (Kafka's own StorageTool --add-scram); later starts keep those in
#       the metadata log. --plain adds a PLAIN user to sasl_plaintext.
#       --authorizer turns on ACLs (StandardAuthorizer) with User:ANONYMOUS
#       (PLAINTEXT, CONTROLLER and SSL without a client certificate) as the
#       only super user. Listeners, --tls-dir, --plain and --authorizer are
#       kept in DIR and reused on the next start when none of them is given.
#
#   kafka.sh stop   --dir DIR    SIGTERM, wait (30 s), then SIGKILL
#   kafka.sh kill   --dir DIR    SIGKILL now (crash simulation)
#   kafka.sh status --dir DIR    exit 0 and print "running ..." or exit 3 "stopped"
#
# Environment:
#   KAFKAWAL_KAFKA_CACHE      classpath cache dir (default ~/.cache/kafkawal-kafka)
#   KAFKAWAL_KAFKA_VERSION    override the Kafka version of pom.xml
#   KAFKAWAL_KAFKA_LOG_LEVEL  root log level of the broker (default WARN)
#   KAFKAWAL_KAFKA_HEAP       JVM heap flags (default "-Xmx512m -Xms256m")
#   JAVA                      java binary (default: java on PATH)
#
# Every failure prints the tail of the broker log and exits non-zero.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
POM="$SCRIPT_DIR/pom.xml"
CACHE_DIR=${KAFKAWAL_KAFKA_CACHE:-$HOME/.cache/kafkawal-kafka}
JAVA=${JAVA:-java}
LOG_TAIL_LINES=50

DIR=""
LOG=""

log() { printf 'kafka.sh: %s\n' "$*" >&2; }

show_log_tail() {
	if [[ -n "$LOG" && -s "$LOG" ]]; then
		printf -- '--- last %d lines of %s ---\n' "$LOG_TAIL_LINES" "$LOG" >&2
		tail -n "$LOG_TAIL_LINES" "$LOG" >&2 || true
		printf -- '--- end of %s ---\n' "$LOG" >&2
	fi
}

die() {
	log "error: $*"
	show_log_tail
	exit 1
}

usage() {
	sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
	exit 2
}

# ---------------------------------------------------------------- classpath

# classpath_file prints the cached classpath file, resolving it if needed.
classpath_file() {
	command -v "$JAVA" >/dev/null || die "java not found (install a JDK 17+)"
	local key version
	version=${KAFKAWAL_KAFKA_VERSION:-}
	key=$( { cat "$POM"; printf 'version=%s\n' "$version"; } | sha256sum | cut -c1-16)
	local cp="$CACHE_DIR/classpath-$key.txt"
	if classpath_ok "$cp"; then
		printf '%s\n' "$cp"
		return 0
	fi
	command -v mvn >/dev/null || die "mvn not found (install Maven to resolve the Kafka jars)"
	mkdir -p "$CACHE_DIR"
	# Several test binaries may ask at once: one resolves, the others wait.
	exec 9>"$CACHE_DIR/.lock"
	flock -w 900 9 || die "timed out waiting for $CACHE_DIR/.lock"
	if ! classpath_ok "$cp"; then
		local tmp="$cp.tmp.$$" out="$CACHE_DIR/mvn.log"
		local args=(-B -q -f "$POM" dependency:build-classpath "-Dmdep.outputFile=$tmp")
		[[ -n "$version" ]] && args+=("-Dkafka.version=$version")
		log "resolving the Kafka classpath with Maven (first run only; see $out)"
		if ! mvn "${args[@]}" >"$out" 2>&1; then
			tail -n "$LOG_TAIL_LINES" "$out" >&2 || true
			rm -f "$tmp"
			flock -u 9
			die "mvn dependency:build-classpath failed"
		fi
		mv -f "$tmp" "$cp"
	fi
	flock -u 9
	exec 9>&-
	printf '%s\n' "$cp"
}

# classpath_ok: the file exists and every jar it names is still on disk
# (the Maven repository may have been cleaned since).
classpath_ok() {
	[[ -s "$1" ]] || return 1
	local jar
	local IFS=:
	for jar in $(<"$1"); do
		[[ -f "$jar" ]] || return 1
	done
	return 0
}

# ---------------------------------------------------------------- helpers

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# free_port picks a loopback port nobody listens on.
free_port() {
	local p i
	for ((i = 0; i < 200; i++)); do
		p=$((20000 + RANDOM % 30000))
		if ! port_open "$p"; then
			printf '%s\n' "$p"
			return 0
		fi
	done
	die "no free port found"
}

# broker_pid prints the pid of DIR's broker if it is alive and really is our
# JVM (a stale pid file may name a recycled pid).
broker_pid() {
	local f="$DIR/broker.pid" pid
	[[ -s "$f" ]] || return 1
	pid=$(<"$f")
	[[ "$pid" =~ ^[0-9]+$ ]] || return 1
	kill -0 "$pid" 2>/dev/null || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$DIR/server.properties" || return 1
	! exited "$pid" || return 1
	printf '%s\n' "$pid"
}

prop() { # prop FILE KEY: value of KEY in a properties file, empty if absent
	[[ -f "$1" ]] || return 0
	sed -n "s/^$2=//p" "$1" | tail -n 1
}

stop_watcher() {
	local f="$DIR/watcher.pid" pid
	if [[ -s "$f" ]]; then
		pid=$(<"$f")
		if [[ "$pid" =~ ^[0-9]+$ ]] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'kafkawal-watcher'; then
			kill -TERM "$pid" 2>/dev/null || true
		fi
		rm -f "$f"
	fi
}

# exited PID: the process is gone or a zombie whose threads have all exited.
# (After SIGKILL the JVM's main thread turns zombie while other threads still
# tear down and hold its sockets open, so "state Z" alone is not enough.)
exited() {
	local pid=$1
	kill -0 "$pid" 2>/dev/null || return 0
	local tasks
	tasks=(/proc/"$pid"/task/*)
	[[ ${#tasks[@]} -le 1 && "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" == Z ]]
}

wait_gone() { # wait_gone PID SECONDS
	local pid=$1 deadline=$((SECONDS + $2))
	until exited "$pid"; do
		((SECONDS < deadline)) || return 1
		sleep 0.1
	done
	return 0
}

wait_port_free() { # wait_port_free PORT SECONDS
	local deadline=$((SECONDS + $2))
	while port_open "$1"; do
		((SECONDS < deadline)) || return 1
		sleep 0.1
	done
	return 0
}

new_cluster_id() {
	# A Kafka cluster id is a UUID in URL-safe base64 without padding (22 chars).
	# Kafka's own random-uuid never starts with '-', so neither does ours.
	local id
	while :; do
		id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
		[[ "$id" == -* || ${#id} -ne 22 ]] || break
	done
	printf '%s\n' "$id"
}

# ---------------------------------------------------------------- commands

# security_props ADVERTISE ADV_LISTENER TLS AUTHORIZER LISTENER... -- PLAIN...
# prints the listener and security part of server.properties, PLAINTEXT
# (with ADVERTISE when ADV_LISTENER is plaintext), CONTROLLER (unless the
# node joins another's controller) and INTERNAL (with an internal port)
# included. Reads $port, $cport, $iport and $join.
security_props() {
	local advertise=$1 adv_listener=$2 tls=$3 authorizer=$4
	shift 4
	local names=() ports=() arg
	while (($#)); do
		arg=$1
		shift
		[[ "$arg" != -- ]] || break
		[[ "$arg" =~ ^(ssl|mtls|sasl_ssl|sasl_plaintext)=([0-9]+)$ ]] ||
			die "start: bad --listener $arg (want ssl|mtls|sasl_ssl|sasl_plaintext=PORT)"
		names+=("${BASH_REMATCH[1]}")
		ports+=("${BASH_REMATCH[2]}")
	done
	local plain=("$@")
	local ls="PLAINTEXT://127.0.0.1:$port"
	[[ -n "$join" ]] || ls+=",CONTROLLER://127.0.0.1:$cport"
	local adv="" map="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
	local need_tls=false have_plain_listener=false found=false i up a
	if [[ "$adv_listener" == plaintext ]]; then
		adv="PLAINTEXT://$advertise"
		found=true
	else
		adv="PLAINTEXT://127.0.0.1:$port"
	fi
	for i in "${!names[@]}"; do
		up=${names[$i]^^}
		a="127.0.0.1:${ports[$i]}"
		if [[ "${names[$i]}" == "$adv_listener" ]]; then
			a=$advertise
			found=true
		fi
		ls+=",$up://127.0.0.1:${ports[$i]}"
		adv+=",$up://$a"
		case "${names[$i]}" in
		ssl) map+=",SSL:SSL"; need_tls=true ;;
		mtls) map+=",MTLS:SSL"; need_tls=true ;;
		sasl_ssl) map+=",SASL_SSL:SASL_SSL"; need_tls=true ;;
		sasl_plaintext) map+=",SASL_PLAINTEXT:SASL_PLAINTEXT"; have_plain_listener=true ;;
		esac
	done
	if [[ -n "$iport" ]]; then
		ls+=",INTERNAL://127.0.0.1:$iport"
		adv+=",INTERNAL://127.0.0.1:$iport"
		map+=",INTERNAL:PLAINTEXT"
	fi
	[[ "$found" == true ]] || die "start: --advertise-listener $adv_listener is not a listener of this broker"
	printf 'listeners=%s\nadvertised.listeners=%s\nlistener.security.protocol.map=%s\n' "$ls" "$adv" "$map"
	if [[ "$need_tls" == true ]]; then
		[[ -n "$tls" ]] || die "start: --tls-dir is required by the ssl, mtls and sasl_ssl listeners"
		tls=$(cd "$tls" && pwd) || die "start: no such directory: --tls-dir $tls"
		[[ -r "$tls/ca.pem" && -r "$tls/broker.pem" ]] || die "start: --tls-dir $tls must hold ca.pem and broker.pem"
		cat <<EOF
ssl.keystore.type=PEM
ssl.keystore.location=$tls/broker.pem
ssl.truststore.type=PEM
ssl.truststore.location=$tls/ca.pem
ssl.client.auth=none
listener.name.mtls.ssl.client.auth=required
EOF
	fi
	cat <<EOF
listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_plaintext.sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-512
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
EOF
	local jaas="" cred re='^([A-Za-z0-9._-]+):([^,"\\[:space:]]+)$'
	for cred in "${plain[@]}"; do
		[[ "$cred" =~ $re ]] || die "start: bad --plain (want USER:PASSWORD, user [A-Za-z0-9._-], no comma, quote, backslash or space)"
		jaas+=" user_${BASH_REMATCH[1]}=\"${BASH_REMATCH[2]}\""
	done
	if [[ "$have_plain_listener" == true ]]; then
		printf 'listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required%s;\n' "$jaas"
	fi
	if [[ "$authorizer" == true ]]; then
		cat <<EOF
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:ANONYMOUS
allow.everyone.if.no.acl.found=false
EOF
	fi
	local IFS=,
	printf '# kafkawal bookkeeping of the security options (see kafka.sh start)\n'
	printf 'kafkawal.listeners=%s\n' "$(for i in "${!names[@]}"; do printf '%s=%s,' "${names[$i]}" "${ports[$i]}"; done | sed 's/,$//')"
	printf 'kafkawal.advertise.listener=%s\nkafkawal.tls.dir=%s\nkafkawal.authorizer=%s\nkafkawal.plain=%s\n' "$adv_listener" "$tls" "$authorizer" "${plain[*]}"
}

cmd_start() {
	local port="" cport="" advertise="" autocreate=false partitions=1 fresh=false owner="" timeout=90
	local listeners=() adv_listener="" tls="" scram=() plain=() authorizer=false secure_given=false
	local iport="" nodeid="" join="" cid=""
	while (($#)); do
		case "$1" in
		--dir) DIR=$2; shift 2 ;;
		--internal-port) iport=$2; shift 2 ;;
		--node-id) nodeid=$2; shift 2 ;;
		--join) join=$2; shift 2 ;;
		--cluster-id) cid=$2; shift 2 ;;
		--port) port=$2; shift 2 ;;
		--controller-port) cport=$2; shift 2 ;;
		--advertise) advertise=$2; shift 2 ;;
		--auto-create) autocreate=$2; shift 2 ;;
		--partitions) partitions=$2; shift 2 ;;
		--fresh) fresh=true; shift ;;
		--owner-pid) owner=$2; shift 2 ;;
		--timeout) timeout=$2; shift 2 ;;
		--listener) listeners+=("$2"); secure_given=true; shift 2 ;;
		--advertise-listener) adv_listener=$2; shift 2 ;;
		--tls-dir) tls=$2; secure_given=true; shift 2 ;;
		--scram) scram+=("$2"); shift 2 ;;
		--plain) plain+=("$2"); secure_given=true; shift 2 ;;
		--authorizer) authorizer=true; secure_given=true; shift ;;
		*) die "start: unknown argument $1" ;;
		esac
	done
	[[ -n "$DIR" ]] || die "start: --dir is required"
	mkdir -p "$DIR"
	DIR=$(cd "$DIR" && pwd)
	LOG="$DIR/broker.log"
	local props="$DIR/server.properties" data="$DIR/data"

	# Defaults from the previous start in this DIR: a restart must come back
	# on the same ports (the controller endpoint is recorded in the metadata
	# log by the standalone format).
	[[ -n "$port" ]] || port=$(prop "$props" kafkawal.port)
	[[ -n "$cport" ]] || cport=$(prop "$props" kafkawal.controller.port)
	[[ -n "$iport" ]] || iport=$(prop "$props" kafkawal.internal.port)
	[[ -n "$nodeid" ]] || nodeid=$(prop "$props" node.id)
	[[ -n "$join" ]] || join=$(prop "$props" kafkawal.join)
	[[ -n "$nodeid" ]] || nodeid=1
	[[ "$nodeid" =~ ^[1-9][0-9]*$ ]] || die "start: bad --node-id $nodeid"
	[[ -z "$iport" || "$iport" =~ ^[0-9]+$ ]] || die "start: bad --internal-port $iport"
	if [[ -n "$join" && -z "$cid" && ! -s "$DIR/cluster.id" ]]; then
		die "start: --join needs --cluster-id"
	fi
	[[ -n "$port" ]] || die "start: --port is required"
	[[ "$port" =~ ^[0-9]+$ ]] || die "start: bad --port $port"
	[[ "$autocreate" == true || "$autocreate" == false ]] || die "start: --auto-create must be true or false"
	[[ "$partitions" =~ ^[1-9][0-9]*$ ]] || die "start: bad --partitions $partitions"
	[[ "$timeout" =~ ^[1-9][0-9]*$ ]] || die "start: bad --timeout $timeout"
	local deadline=$((SECONDS + timeout)) begin=$SECONDS
	[[ -n "$advertise" ]] || advertise="127.0.0.1:$port"
	if [[ "$secure_given" == false && -f "$props" ]]; then
		local v
		v=$(prop "$props" kafkawal.listeners)
		[[ -z "$v" ]] || read -r -a listeners <<<"${v//,/ }"
		tls=$(prop "$props" kafkawal.tls.dir)
		v=$(prop "$props" kafkawal.plain)
		[[ -z "$v" ]] || read -r -a plain <<<"${v//,/ }"
		[[ "$(prop "$props" kafkawal.authorizer)" != true ]] || authorizer=true
		[[ -n "$adv_listener" ]] || adv_listener=$(prop "$props" kafkawal.advertise.listener)
	fi
	[[ -n "$adv_listener" ]] || adv_listener=plaintext

	local pid
	if pid=$(broker_pid); then
		die "a broker is already running in $DIR (pid $pid)"
	fi
	if [[ -z "$join" ]]; then
		[[ -n "$cport" ]] || cport=$(free_port)
	fi
	# A broker killed a moment ago may still be letting go of its sockets.
	wait_port_free "$port" 10 || die "port $port is already in use"
	if [[ -z "$join" ]]; then
		wait_port_free "$cport" 10 || die "controller port $cport is already in use"
	fi
	if [[ -n "$iport" ]]; then
		wait_port_free "$iport" 10 || die "internal port $iport is already in use"
	fi

	# Brokers talk among themselves on INTERNAL when there is one (see
	# security_props); the controller is on the first node only.
	local roles="broker,controller" quorum="127.0.0.1:$cport" ibl=PLAINTEXT
	[[ -z "$iport" ]] || ibl=INTERNAL
	if [[ -n "$join" ]]; then
		roles=broker
		quorum=$join
	fi

	local l
	for l in "${listeners[@]}"; do
		wait_port_free "${l#*=}" 10 || die "port ${l#*=} (--listener $l) is already in use"
	done
	local secure_props
	secure_props=$(security_props "$advertise" "$adv_listener" "$tls" "$authorizer" "${listeners[@]}" -- "${plain[@]}") || exit 1

	local cpfile cp
	cpfile=$(classpath_file)
	cp=$(<"$cpfile")

	cat >"$props" <<EOF
# Written by scripts/kafka/kafka.sh; rewritten on every start.
process.roles=$roles
node.id=$nodeid
controller.quorum.bootstrap.servers=$quorum
inter.broker.listener.name=$ibl
controller.listener.names=CONTROLLER
log.dirs=$data
num.partitions=$partitions
auto.create.topics.enable=$autocreate
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=5
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=5
# The coordinator looks for transactions open longer than their timeout every
# 10 s by default; 1 s lets tests of an outage longer than
# transaction.timeout.ms see the abort soon after the timeout.
transaction.abort.timed.out.transaction.cleanup.interval.ms=1000
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
# After a SIGKILL the restarted node cannot register again until the session of
# its previous incarnation expires (DUPLICATE_BROKER_REGISTRATION): the default
# 9 s session made every kill/restart cost about 10 s more than a clean restart.
broker.session.timeout.ms=4000
broker.heartbeat.interval.ms=1000
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
$secure_props
# kafkawal bookkeeping (ignored by Kafka, read back by kafka.sh on restart)
kafkawal.port=$port
kafkawal.controller.port=$cport
kafkawal.internal.port=$iport
kafkawal.join=$join
EOF
	chmod 600 "$props"

	local level=${KAFKAWAL_KAFKA_LOG_LEVEL:-WARN}
	cat >"$DIR/log4j2.properties" <<EOF
# Written by scripts/kafka/kafka.sh: everything to stdout (DIR/broker.log),
# WARN by default, INFO for the lines that tell the broker's life cycle.
status = warn
shutdownHook = disable
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = $level
rootLogger.appenderRef.out.ref = STDOUT
logger.server.name = kafka.server.KafkaRaftServer
logger.server.level = INFO
logger.broker.name = kafka.server.BrokerServer
logger.broker.level = INFO
logger.controller.name = kafka.server.ControllerServer
logger.controller.level = INFO
logger.kafka.name = kafka.Kafka
logger.kafka.level = INFO
EOF

	if [[ "$fresh" == true ]]; then
		rm -rf "$data"
	fi
	local cluster_id
	if [[ -s "$DIR/cluster.id" ]]; then
		cluster_id=$(<"$DIR/cluster.id")
	else
		cluster_id=${cid:-$(new_cluster_id)}
		printf '%s\n' "$cluster_id" >"$DIR/cluster.id"
	fi

	local jvm_log=(-Dlog4j2.configurationFile="$DIR/log4j2.properties")
	printf '\n===== kafka.sh start %s (port %s, controller %s, advertise %s) =====\n' \
		"$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$port" "$cport" "$advertise" >>"$LOG"

	if [[ ! -f "$data/meta.properties" ]]; then
		mkdir -p "$data"
		# A short-lived JVM: C1 only and the serial GC start it faster.
		local standalone=(--standalone)
		[[ -z "$join" ]] || standalone=()
		local add_scram=() cred re='^([A-Za-z0-9._-]+):([^,"\\[:space:]]+)$'
		for cred in "${scram[@]}"; do
			[[ "$cred" =~ $re ]] || die "start: bad --scram (want USER:PASSWORD, user [A-Za-z0-9._-], no comma, quote, backslash or space)"
			add_scram+=(--add-scram "SCRAM-SHA-512=[name=${BASH_REMATCH[1]},password=\"${BASH_REMATCH[2]}\"]")
		done
		if ! "$JAVA" -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC "${jvm_log[@]}" -cp "$cp" kafka.tools.StorageTool \
			format "${standalone[@]}" -t "$cluster_id" -c "$props" "${add_scram[@]}" >>"$LOG" 2>&1 </dev/null; then
			die "formatting $data failed"
		fi
	fi

	local heap=${KAFKAWAL_KAFKA_HEAP:--Xmx512m -Xms256m}
	# shellcheck disable=SC2086 # heap holds several flags on purpose
	"$JAVA" $heap -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError \
		-Djava.awt.headless=true "${jvm_log[@]}" \
		-cp "$cp" kafka.Kafka "$props" >>"$LOG" 2>&1 </dev/null &
	pid=$!
	printf '%s\n' "$pid" >"$DIR/broker.pid"

	if [[ -n "$owner" ]]; then
		# Kill the broker if the owner dies without stopping it. Runs in the
		# caller's process group too; its stdio must not hold the caller's pipes.
		stop_watcher
		(
			exec -a kafkawal-watcher bash -c '
				owner=$1 pid=$2 log=$3
				trap "exit 0" TERM
				while kill -0 "$pid" 2>/dev/null; do
					if ! kill -0 "$owner" 2>/dev/null; then
						kill -KILL "$pid" 2>/dev/null
						printf "\n===== kafka.sh watcher: owner %s is gone, SIGKILLed pid %s =====\n" "$owner" "$pid" >>"$log"
						exit 0
					fi
					sleep 1
				done' kafkawal-watcher "$owner" "$pid" "$LOG"
		) </dev/null >/dev/null 2>&1 &
		printf '%s\n' "$!" >"$DIR/watcher.pid"
	fi

	# Wait until the broker says it started (KRaft: after it is unfenced) and
	# its listener answers.
	while :; do
		if exited "$pid"; then
			wait "$pid" 2>/dev/null && rc=0 || rc=$?
			rm -f "$DIR/broker.pid"
			die "broker exited during startup (exit status $rc)"
		fi
		if started_since_last_marker && port_open "$port"; then
			break
		fi
		if ((SECONDS >= deadline)); then
			kill -KILL "$pid" 2>/dev/null || true
			rm -f "$DIR/broker.pid"
			die "broker did not start within ${timeout}s"
		fi
		sleep 0.2
	done
	printf 'kafka.sh: broker started: pid %s, bootstrap %s, listener 127.0.0.1:%s, controller 127.0.0.1:%s, %ss\n' \
		"$pid" "$advertise" "$port" "$cport" "$((SECONDS - begin))" >&2
	printf '%s\n' "$advertise"
}

# started_since_last_marker: the log, after the last start marker, has the
# broker's "Kafka Server started" line.
started_since_last_marker() {
	awk '/^===== kafka.sh start /{s=0} /Kafka Server started/{s=1} END{exit !s}' "$LOG"
}

parse_dir() {
	while (($#)); do
		case "$1" in
		--dir) DIR=$2; shift 2 ;;
		*) die "unknown argument $1" ;;
		esac
	done
	[[ -n "$DIR" ]] || die "--dir is required"
	[[ -d "$DIR" ]] || die "no such directory: $DIR"
	DIR=$(cd "$DIR" && pwd)
	LOG="$DIR/broker.log"
}

cmd_stop() {
	parse_dir "$@"
	local pid
	stop_watcher
	if ! pid=$(broker_pid); then
		rm -f "$DIR/broker.pid"
		log "no broker running in $DIR"
		return 0
	fi
	kill -TERM "$pid" 2>/dev/null || true
	if ! wait_gone "$pid" 30; then
		log "broker $pid ignored SIGTERM for 30s; sending SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
		wait_gone "$pid" 10 || die "broker $pid survived SIGKILL"
	fi
	rm -f "$DIR/broker.pid"
	log "broker $pid stopped"
}

cmd_kill() {
	parse_dir "$@"
	local pid
	stop_watcher
	if ! pid=$(broker_pid); then
		rm -f "$DIR/broker.pid"
		log "no broker running in $DIR"
		return 0
	fi
	kill -KILL "$pid" 2>/dev/null || true
	wait_gone "$pid" 10 || die "broker $pid survived SIGKILL"
	rm -f "$DIR/broker.pid"
	printf '\n===== kafka.sh kill %s (SIGKILL pid %s) =====\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$pid" >>"$LOG"
	log "broker $pid killed"
}

cmd_status() {
	parse_dir "$@"
	local pid port
	port=$(prop "$DIR/server.properties" kafkawal.port)
	if pid=$(broker_pid); then
		printf 'running pid %s port %s\n' "$pid" "$port"
		return 0
	fi
	printf 'stopped\n'
	return 3
}

main() {
	(($#)) || usage
	local cmd=$1
	shift
	case "$cmd" in
	classpath) classpath_file ;;
	start) cmd_start "$@" ;;
	stop) cmd_stop "$@" ;;
	kill) cmd_kill "$@" ;;
	status) cmd_status "$@" ;;
	-h | --help | help) usage ;;
	*) log "unknown command $cmd"; usage ;;
	esac
}

main "$@"
