#!/usr/bin/env bash
# Debian's RabbitMQ 3.10 with its AMQP 1.0 plugin, as the upstream of the gateway's
# conformance cases in CI (GATEWAY_UPSTREAM=rabbitmq310): the quick real RabbitMQ, one
# apt package, no chroot.  Loopback only, its own node name, ports and data directory,
# so it never meets a system RabbitMQ or the RabbitMQ 4 of ../shared/rabbitmq4.
#   rabbitmq310.sh start   install if missing, (re)start, wait for the AMQP port, print pid=PID
#   rabbitmq310.sh stop    stop the node (SIGTERM, then SIGKILL), leave its data
#   rabbitmq310.sh kill    SIGKILL the node (the gateway's upstream-failure case)
#   rabbitmq310.sh pid     the running node's PID
# Ports: AMQP ${RMQ310_PORT:-27672}, Erlang distribution ${RMQ310_DIST_PORT:-27673}, both
# below Linux's ephemeral range (32768-60999): a client retrying a port in that range
# while the node is down can be given that very port as its own and connect to
# itself (TCP self-connect), and the node then fails to listen (eaddrinuse): seen on
# 35672 with a client redialling every 20 ms across a kill and start, as the gateway
# (and wait_port below) redial in the restart case.
# RabbitMQ 3.10's AMQP 1.0 addresses are the v1 ones: /queue/NAME declares the queue,
# /amq/queue/NAME needs it to exist, /exchange/X/KEY publishes to an exchange.
set -euo pipefail
PORT="${RMQ310_PORT:-27672}"
DIST_PORT="${RMQ310_DIST_PORT:-27673}"
BASE="${RMQ310_BASE:-/tmp/amqpws-rabbitmq310}"
NODE="amqpws310_$PORT@localhost"
SERVER=/usr/lib/rabbitmq/bin/rabbitmq-server
CTL=/usr/lib/rabbitmq/bin/rabbitmqctl

log() { echo "[rabbitmq310] $*" >&2; }

env_for_node() {
  export RABBITMQ_NODENAME="$NODE" RABBITMQ_USE_LONGNAME=false
  export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT="$PORT" RABBITMQ_DIST_PORT="$DIST_PORT"
  export RABBITMQ_CTL_DIST_PORT_MIN=$((DIST_PORT + 100)) RABBITMQ_CTL_DIST_PORT_MAX=$((DIST_PORT + 110))
  export RABBITMQ_ENABLED_PLUGINS_FILE="$BASE/enabled_plugins" RABBITMQ_CONFIG_FILE="$BASE/rabbitmq"
  export RABBITMQ_MNESIA_BASE="$BASE/mnesia" RABBITMQ_LOG_BASE="$BASE/log"
  export RABBITMQ_PID_FILE="$BASE/pid" HOME="$BASE"
}

install() {
  [ -x "$SERVER" ] && return 0
  [ "$(id -u)" = 0 ] || { log "rabbitmq-server is not installed (as root: apt-get install rabbitmq-server)"; exit 1; }
  log "installing Debian's rabbitmq-server"
  mkdir -p /usr/sbin
  # never let the package start the system's node
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends rabbitmq-server >&2 \
    || { apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
         --no-install-recommends rabbitmq-server >&2; }
  rm -f /usr/sbin/policy-rc.d
}

running_pid() { # the node's beam process: the one whose home is $BASE
  local p
  p="$(pgrep -f -- "beam.smp.* -home $BASE( |$)" | head -1 || true)"
  [ -n "$p" ] || return 1
  echo "$p"
}

wait_port() {
  local i
  for i in $(seq 1 $(($1 * 10))); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

stop_node() {
  local p
  if p="$(running_pid)"; then
    kill "$p" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$p" 2>/dev/null || true
  fi
  rm -f "$BASE/pid"
}

case "${1:-}" in
  start)
    install
    stop_node
    mkdir -p "$BASE/mnesia" "$BASE/log"
    echo '[rabbitmq_amqp1_0].' > "$BASE/enabled_plugins"
    cat > "$BASE/rabbitmq.conf" <<CONF
listeners.tcp.1 = 127.0.0.1:$PORT
loopback_users.guest = true
log.console = false
log.file.level = warning
disk_free_limit.absolute = 50MB
CONF
    env_for_node
    ( setsid "$SERVER" > "$BASE/log/startup.log" 2>&1 & )
    if ! wait_port 90; then
      log "node did not come up; see $BASE/log/startup.log"; tail -20 "$BASE/log/startup.log" >&2; exit 1
    fi
    for _ in $(seq 1 50); do running_pid >/dev/null && break; sleep 0.1; done
    # the listener opens before the node has finished booting (its plugins, the
    # rabbit app for rabbitmqctl): wait for that too
    if ! "$CTL" -n "$NODE" await_startup --timeout 60 >/dev/null 2>&1; then
      log "node did not finish starting; see $BASE/log"; exit 1
    fi
    echo "rabbitmq 3.10 $NODE up on amqp://127.0.0.1:$PORT"
    echo "pid=$(running_pid || echo unknown)"
    ;;
  stop) stop_node; echo "rabbitmq310 $NODE stopped" ;;
  kill)
    p="$(running_pid)" || { log "not running"; exit 1; }
    kill -9 "$p"
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    rm -f "$BASE/pid"; echo "rabbitmq310 $NODE killed" ;;
  pid) running_pid ;;
  ctl) shift; env_for_node; "$CTL" -n "$NODE" "$@" ;;
  *) echo "usage: $0 start|stop|kill|pid|ctl ARGS..." >&2; exit 2 ;;
esac
