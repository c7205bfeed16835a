/*
 * Load generator for NATS JetStream on the NATS C client (libnats, from
 * Debian), so that the peer's client is native code like `strata bench`.
 *
 *   nats_load produce URL STREAM REPLICAS BYTES SIZE
 *       (re)creates STREAM (file storage, subject = STREAM, REPLICAS
 *       replicas) and publishes BYTES of SIZE-byte values with up to
 *       PENDING (default 4096) asynchronous publishes unacknowledged; every
 *       publish is acknowledged by the stream (after replication when
 *       REPLICAS > 1). One JSON line: MB/s (10^6 bytes of values),
 *       records/s.
 *   nats_load consume URL STREAM BYTES SIZE
 *       reads the stream from the start with a pull consumer (no acks),
 *       batches of 1,000 messages; MB/s, records/s.
 *
 * Build: cc -O2 -o target/nats_load benches/scripts/nats_load.c -lnats
 */
#include <nats/nats.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void check(natsStatus s, const char *what) {
    if (s != NATS_OK) {
        fprintf(stderr, "nats_load: %s: %s\n", what, natsStatus_GetText(s));
        nats_PrintLastErrorStack(stderr);
        exit(1);
    }
}

static int produce(jsCtx *js, const char *stream, int replicas, int64_t bytes, int size) {
    jsStreamConfig cfg;
    jsErrCode jerr = 0;
    jsStreamInfo *si = NULL;
    const char *subjects[1] = {stream};
    js_DeleteStream(js, stream, NULL, &jerr);
    jsStreamConfig_Init(&cfg);
    cfg.Name = stream;
    cfg.Subjects = subjects;
    cfg.SubjectsLen = 1;
    cfg.Storage = js_FileStorage;
    cfg.Replicas = replicas;
    /* A new cluster answers once its JetStream meta leader is elected. */
    natsStatus s = NATS_ERR;
    for (int tries = 0; tries < 60; tries++) {
        s = js_AddStream(&si, js, &cfg, NULL, &jerr);
        if (s == NATS_OK) {
            break;
        }
        nats_Sleep(500);
    }
    check(s, "add stream");
    jsStreamInfo_Destroy(si);

    char *value = malloc((size_t)size);
    if (value == NULL) {
        return 1;
    }
    for (int i = 0; i < size; i++) {
        value[i] = (char)('a' + i % 26);
    }
    int64_t records = bytes / size;
    double t0 = now_s();
    for (int64_t i = 0; i < records; i++) {
        memcpy(value, &i, sizeof i);
        check(js_PublishAsync(js, stream, value, size, NULL), "publish");
    }
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = 120000;
    check(js_PublishAsyncComplete(js, &po), "wait for acknowledgements");
    double secs = now_s() - t0;
    natsMsgList pending = {0};
    if (js_PublishAsyncGetPendingList(&pending, js) == NATS_OK && pending.Count > 0) {
        fprintf(stderr, "nats_load: %d publishes unacknowledged\n", pending.Count);
        natsMsgList_Destroy(&pending);
        return 1;
    }
    printf("{\"system\":\"nats\",\"workload\":\"produce\",\"replicas\":%d,\"records\":%lld,"
           "\"seconds\":%.3f,\"records_per_sec\":%.0f,\"mb_per_sec\":%.1f}\n",
           replicas, (long long)records, secs, (double)records / secs,
           (double)records * size / secs / 1e6);
    free(value);
    return 0;
}

static int consume(jsCtx *js, const char *stream, int64_t bytes, int size) {
    natsSubscription *sub = NULL;
    jsErrCode jerr = 0;
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = stream;
    so.Config.AckPolicy = js_AckNone;
    so.Config.DeliverPolicy = js_DeliverAll;
    check(js_PullSubscribe(&sub, js, stream, "bench-reader", NULL, &so, &jerr), "subscribe");
    int64_t want = bytes / size, got = 0, value_bytes = 0;
    double t0 = now_s();
    while (got < want) {
        natsMsgList list = {0};
        natsStatus s = natsSubscription_Fetch(&list, sub, 1000, 5000, &jerr);
        if (s == NATS_TIMEOUT) {
            fprintf(stderr, "nats_load: stream ended at %lld of %lld\n", (long long)got,
                    (long long)want);
            return 1;
        }
        check(s, "fetch");
        for (int i = 0; i < list.Count; i++) {
            value_bytes += natsMsg_GetDataLength(list.Msgs[i]);
        }
        got += list.Count;
        natsMsgList_Destroy(&list);
    }
    double secs = now_s() - t0;
    printf("{\"system\":\"nats\",\"workload\":\"consume\",\"records\":%lld,\"seconds\":%.3f,"
           "\"records_per_sec\":%.0f,\"mb_per_sec\":%.1f}\n",
           (long long)got, secs, (double)got / secs, (double)value_bytes / secs / 1e6);
    natsSubscription_Destroy(sub);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 6 || (strcmp(argv[1], "produce") != 0 && strcmp(argv[1], "consume") != 0) ||
        (strcmp(argv[1], "produce") == 0 && argc < 7)) {
        fprintf(stderr, "usage: nats_load produce URL STREAM REPLICAS BYTES SIZE\n"
                        "       nats_load consume URL STREAM BYTES SIZE\n");
        return 2;
    }
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    jsOptions jo;
    check(natsConnection_ConnectTo(&nc, argv[2]), "connect");
    jsOptions_Init(&jo);
    const char *pending = getenv("PENDING");
    jo.PublishAsync.MaxPending = pending ? atoll(pending) : 4096;
    jo.Wait = 30000;
    check(natsConnection_JetStream(&js, nc, &jo), "jetstream");
    int rc;
    if (strcmp(argv[1], "produce") == 0) {
        rc = produce(js, argv[3], atoi(argv[4]), atoll(argv[5]), atoi(argv[6]));
    } else {
        rc = consume(js, argv[3], atoll(argv[4]), atoi(argv[5]));
    }
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    return rc;
}
