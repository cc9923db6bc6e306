#!/bin/sh
# Dedicated MirrorMaker 2, as Kafka's own bin/connect-mirror-maker.sh starts it: KAFKA_HEAP_OPTS from the Deployment;
# the JVM kept small by default (serial GC, C1 only) because the lab runs on 2 cores. exec: PID 1 is the JVM, which
# the Deployment's liveness probe looks for.
exec java ${KAFKA_HEAP_OPTS:--Xmx512m} \
  ${KAFKA_JVM_PERFORMANCE_OPTS:--Xms64m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xss512k -Djava.awt.headless=true} \
  -Dlog4j.configuration=file:/opt/kafka/config/connect-log4j.properties \
  -cp '/opt/kafka/libs/*' org.apache.kafka.connect.mirror.MirrorMaker "$@"
