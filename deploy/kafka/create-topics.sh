#!/bin/sh
# Create every badbuzz topic, idempotently, with BADBUZZ_PARTITIONS partitions; then check the partition
# count of each (an existing topic with another count is an error: see "Changing the partition count" in
# deploy/README.md). Used by the compose `topic-init` service; runs against any cluster with the Kafka CLI:
#
#   KAFKA_BOOTSTRAP=broker-1:9092 REPLICATION_FACTOR=3 BADBUZZ_PARTITIONS=12 sh deploy/kafka/create-topics.sh
#
# Topics: the five pipeline topics, the alerting tick topic, and the changelogs of the Faust tables
# (compacted: they are the tables' state). Faust would create the changelogs itself, with replication
# factor 1 and no say on their settings; creating them here gives them REPLICATION_FACTOR.
set -eu

KAFKA_TOPICS="${KAFKA_TOPICS:-/opt/kafka/bin/kafka-topics.sh}"
BOOTSTRAP="${KAFKA_BOOTSTRAP:-kafka:9092}"
PARTITIONS="${BADBUZZ_PARTITIONS:-4}"
RF="${REPLICATION_FACTOR:-1}"
APP_ID="${BADBUZZ_APP_ID:-badbuzz}"
WAIT_TRIES="${WAIT_TRIES:-60}"

# Same defaults as stream_app.config.ENV_DOCS.
STREAM_TOPICS="${BADBUZZ_TOPIC_TWEETS:-tweets} ${BADBUZZ_TOPIC_ENRICHED:-tweets.enriched} \
${BADBUZZ_TOPIC_FEEDBACK:-tweets.feedback} ${BADBUZZ_TOPIC_ALERTS:-alerts} ${BADBUZZ_TOPIC_DLQ:-tweets.dlq} \
${APP_ID}-alert-ticks ${APP_ID}-predictions-by-id ${APP_ID}-feedback-by-id ${APP_ID}-feedback-resolved \
${APP_ID}-summary-stats"
# Faust names a table's changelog <app id>-<table>-changelog (tables: stream_app/alerting/agents.py).
CHANGELOG_TOPICS="${APP_ID}-alert-state-changelog ${APP_ID}-alert-groups-changelog \
${APP_ID}-alert-digest-changelog ${APP_ID}-alert-deliveries-changelog ${APP_ID}-predictions-changelog \
${APP_ID}-daily-summary-changelog"

tries=0
until "$KAFKA_TOPICS" --bootstrap-server "$BOOTSTRAP" --list >/dev/null 2>&1; do
    tries=$((tries + 1))
    if [ "$tries" -ge "$WAIT_TRIES" ]; then
        echo "topic-init: broker $BOOTSTRAP not reachable after $tries tries" >&2
        exit 1
    fi
    sleep 2
done

create() {
    topic=$1
    shift
    "$KAFKA_TOPICS" --bootstrap-server "$BOOTSTRAP" --create --if-not-exists --topic "$topic" \
        --partitions "$PARTITIONS" --replication-factor "$RF" "$@"
}

for topic in $STREAM_TOPICS; do
    create "$topic"
done
for topic in $CHANGELOG_TOPICS; do
    create "$topic" --config cleanup.policy=compact
done

status=0
for topic in $STREAM_TOPICS $CHANGELOG_TOPICS; do
    count=$("$KAFKA_TOPICS" --bootstrap-server "$BOOTSTRAP" --describe --topic "$topic" \
        | sed -n 's/.*PartitionCount: *\([0-9][0-9]*\).*/\1/p' | head -n 1)
    if [ "$count" != "$PARTITIONS" ]; then
        echo "topic-init: $topic has ${count:-?} partitions, BADBUZZ_PARTITIONS=$PARTITIONS" >&2
        status=1
    fi
done
if [ "$status" -eq 0 ]; then
    echo "topic-init: $(echo "$STREAM_TOPICS" "$CHANGELOG_TOPICS" | wc -w) topics ready" \
        "($PARTITIONS partitions, replication factor $RF)"
fi
exit "$status"
