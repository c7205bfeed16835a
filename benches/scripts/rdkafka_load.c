/*
 * Load generator for the Kafka listener on librdkafka (C, the library
 * behind kcat and confluent-kafka), so the client is native code like
 * `strata bench`.
 *
 *   rdkafka_load produce BOOTSTRAP TOPIC RECORDS SIZE COMPRESSION
 *       one producer to partition 0, acks=all, idempotent, linger 5 ms,
 *       1 MiB batches, 64 MiB buffered (the `strata bench` defaults); one
 *       JSON line: MB/s
 *       (10^6 bytes of values), records/s, send->ack p50/p99/p99.9 ms
 *   rdkafka_load consume BOOTSTRAP TOPIC RECORDS
 *       reads RECORDS from the start of partition 0 (the producer's
 *       warm-up record first); MB/s, records/s
 *
 * Values are text that compresses about as well as JSON events (a quarter
 * of each value random hex, the rest a repeated event), so compressed runs
 * measure real codecs.
 *
 * RDKAFKA_CONF="k=v,..." adds librdkafka settings.
 *
 * Build: cc -O2 -o target/rdkafka_load benches/scripts/rdkafka_load.c -lrdkafka
 */
#include <librdkafka/rdkafka.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NVALUES 256

static int64_t *latencies;
static size_t nlat;
static size_t nerr;

static double now(void) {
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void set(rd_kafka_conf_t *c, const char *k, const char *v) {
        char err[512];
        if (rd_kafka_conf_set(c, k, v, err, sizeof(err)) != RD_KAFKA_CONF_OK) {
                fprintf(stderr, "%s=%s: %s\n", k, v, err);
                exit(2);
        }
}

/* Extra settings from RDKAFKA_CONF ("k=v,k=v"), applied last. */
static void set_extra(rd_kafka_conf_t *c) {
        const char *env = getenv("RDKAFKA_CONF");
        if (!env || !*env)
                return;
        char *copy = strdup(env), *save = NULL;
        for (char *kv = strtok_r(copy, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
                char *eq = strchr(kv, '=');
                if (!eq) {
                        fprintf(stderr, "RDKAFKA_CONF: %s is not k=v\n", kv);
                        exit(2);
                }
                *eq = '\0';
                set(c, kv, eq + 1);
        }
        free(copy);
}

static void delivered(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
        (void)rk;
        (void)opaque;
        if (m->err) {
                if (nerr++ == 0)
                        fprintf(stderr, "delivery failed: %s\n", rd_kafka_err2str(m->err));
                return;
        }
        latencies[nlat++] = rd_kafka_message_latency(m);
}

static int cmp(const void *a, const void *b) {
        int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
        return (x > y) - (x < y);
}

static double quantile_ms(double q) {
        if (nlat == 0)
                return 0;
        size_t i = (size_t)(q * (double)(nlat - 1));
        return (double)latencies[i] / 1000.0;
}

static char **make_values(size_t size) {
        char **v = malloc(NVALUES * sizeof(char *));
        for (int i = 0; i < NVALUES; i++) {
                v[i] = malloc(size);
                size_t j = 0;
                for (; j < size / 4; j++)
                        v[i][j] = "0123456789abcdef"[rand() % 16];
                char ev[64];
                int n = snprintf(ev, sizeof(ev), "{\"event\":\"page_view\",\"user\":%06d}", i);
                for (; j < size; j++)
                        v[i][j] = ev[(j - size / 4) % (size_t)n];
        }
        return v;
}

static int produce(const char *bootstrap, const char *topic, long n, size_t size,
                   const char *compression) {
        char err[512];
        rd_kafka_conf_t *c = rd_kafka_conf_new();
        set(c, "bootstrap.servers", bootstrap);
        set(c, "acks", "all");
        set(c, "enable.idempotence", "true");
        set(c, "linger.ms", "5");
        set(c, "batch.size", "1048576");
        set(c, "compression.type", compression);
        /* 64 MiB buffered, as `strata bench` buffers. */
        set(c, "queue.buffering.max.kbytes", "65536");
        set(c, "queue.buffering.max.messages", "100000");
        set_extra(c);
        rd_kafka_conf_set_dr_msg_cb(c, delivered);
        rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof(err));
        if (!rk) {
                fprintf(stderr, "producer: %s\n", err);
                return 2;
        }
        latencies = malloc((size_t)(n + 1) * sizeof(int64_t));
        char **vals = make_values(size);
        /* Set up as `strata bench` is before its clock starts: the
         * partition's leader known and a producer id acquired (one record,
         * not counted). Without this, librdkafka at times finds the
         * topic's leader only at its 1 s scan of unavailable topics. */
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
        const struct rd_kafka_metadata *md;
        if (rd_kafka_metadata(rk, 0, rkt, &md, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR)
                rd_kafka_metadata_destroy(md);
        rd_kafka_topic_destroy(rkt);
        if (rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(0),
                              RD_KAFKA_V_VALUE(vals[0], size), RD_KAFKA_V_END) ||
            rd_kafka_flush(rk, 10000) || nlat != 1) {
                fprintf(stderr, "warm-up record not delivered\n");
                return 1;
        }
        nlat = 0;
        double start = now();
        for (long i = 0; i < n; i++) {
                for (;;) {
                        rd_kafka_resp_err_t e = rd_kafka_producev(
                            rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(0),
                            RD_KAFKA_V_VALUE(vals[i % NVALUES], size), RD_KAFKA_V_END);
                        if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
                                break;
                        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                                fprintf(stderr, "produce: %s\n", rd_kafka_err2str(e));
                                return 1;
                        }
                        rd_kafka_poll(rk, 1);
                }
                if ((i & 1023) == 0)
                        rd_kafka_poll(rk, 0);
        }
        while (rd_kafka_outq_len(rk) > 0)
                rd_kafka_poll(rk, 10);
        double secs = now() - start;
        rd_kafka_destroy(rk);
        if (nerr > 0 || (long)nlat != n) {
                fprintf(stderr, "%zu of %ld records failed\n", nerr, n);
                return 1;
        }
        qsort(latencies, nlat, sizeof(int64_t), cmp);
        printf("{\"client\":\"librdkafka %s\",\"op\":\"produce\",\"compression\":\"%s\","
               "\"records\":%ld,\"mb_s\":%.1f,\"records_s\":%.0f,"
               "\"p50_ms\":%.2f,\"p99_ms\":%.2f,\"p999_ms\":%.2f}\n",
               rd_kafka_version_str(), compression, n, (double)n * (double)size / 1e6 / secs,
               (double)n / secs, quantile_ms(0.5), quantile_ms(0.99), quantile_ms(0.999));
        return 0;
}

static int consume(const char *bootstrap, const char *topic, long n) {
        char err[512];
        rd_kafka_conf_t *c = rd_kafka_conf_new();
        set(c, "bootstrap.servers", bootstrap);
        set(c, "group.id", "rdkafka-load");
        set(c, "enable.auto.commit", "false");
        set(c, "fetch.message.max.bytes", "1048576");
        set(c, "fetch.max.bytes", "52428800");
        set(c, "queued.max.messages.kbytes", "262144");
        set_extra(c);
        rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, err, sizeof(err));
        if (!rk) {
                fprintf(stderr, "consumer: %s\n", err);
                return 2;
        }
        rd_kafka_topic_partition_list_t *tp = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(tp, topic, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
        rd_kafka_assign(rk, tp);
        rd_kafka_topic_partition_list_destroy(tp);
        long got = 0;
        double bytes = 0, start = 0;
        while (got < n) {
                rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 1000);
                if (!m)
                        continue;
                if (m->err) {
                        if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                                fprintf(stderr, "consume: %s\n", rd_kafka_message_errstr(m));
                        rd_kafka_message_destroy(m);
                        continue;
                }
                if (got == 0)
                        start = now();
                got++;
                bytes += (double)m->len;
                rd_kafka_message_destroy(m);
        }
        double secs = now() - start;
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
        printf("{\"client\":\"librdkafka %s\",\"op\":\"consume\",\"records\":%ld,"
               "\"mb_s\":%.1f,\"records_s\":%.0f}\n",
               rd_kafka_version_str(), n, bytes / 1e6 / secs, (double)n / secs);
        return 0;
}

int main(int argc, char **argv) {
        if (argc == 7 && strcmp(argv[1], "produce") == 0)
                return produce(argv[2], argv[3], atol(argv[4]), (size_t)atol(argv[5]), argv[6]);
        if (argc == 5 && strcmp(argv[1], "consume") == 0)
                return consume(argv[2], argv[3], atol(argv[4]));
        fprintf(stderr,
                "usage: rdkafka_load produce BOOTSTRAP TOPIC RECORDS SIZE COMPRESSION\n"
                "       rdkafka_load consume BOOTSTRAP TOPIC RECORDS\n");
        return 2;
}
