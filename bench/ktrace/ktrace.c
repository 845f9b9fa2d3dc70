// ktrace: a CUDA injection library that records every kernel and memory copy
// a process runs on the GPU, for profiling XLA programs run from Go (no nsys
// on the GPU machine; Go's exit skips C destructors, so records are flushed
// to the file every KTRACE_FLUSH_MS while the process runs).
//
//   nvcc -shared -Xcompiler -fPIC -DKREC=CUpti_ActivityKernel9 -DMREC=CUpti_ActivityMemcpy5 \
//        -I$CUDA/extras/CUPTI/include -o ktrace.so ktrace.c -L$CUDA/extras/CUPTI/lib64 -lcupti
//   CUDA_INJECTION64_PATH=$PWD/ktrace.so KTRACE_OUT=trace.csv ./program
//
// trace.csv lines: kind,start_ns,end_ns,stream,bytes_or_graph,name; for kernels
// the fifth field is the CUDA graph the kernel ran in (0: launched on its own).
// With KTRACE_API=1 it also records every CUDA driver call (kind d, the
// fourth field the calling thread, the fifth the callback id): where the
// host's time goes between kernels.
#include <cupti.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#ifndef KREC
#define KREC CUpti_ActivityKernel9
#endif
#ifndef MREC
#define MREC CUpti_ActivityMemcpy5
#endif

static FILE *out;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static void CUPTIAPI requested(uint8_t **buf, size_t *size, size_t *max) {
  *size = 16 << 20;
  *buf = aligned_alloc(8, *size);
  *max = 0;
}

static void CUPTIAPI completed(CUcontext ctx, uint32_t stream, uint8_t *buf, size_t size, size_t valid) {
  CUpti_Activity *r = NULL;
  pthread_mutex_lock(&mu);
  while (cuptiActivityGetNextRecord(buf, valid, &r) == CUPTI_SUCCESS) {
    if (r->kind == CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL || r->kind == CUPTI_ACTIVITY_KIND_KERNEL) {
      KREC *k = (KREC *)r;
      fprintf(out, "k,%llu,%llu,%u,%u,%s\n", (unsigned long long)k->start, (unsigned long long)k->end,
              (unsigned)k->streamId, (unsigned)k->graphId, k->name ? k->name : "?");
    } else if (r->kind == CUPTI_ACTIVITY_KIND_DRIVER) {
      CUpti_ActivityAPI *a = (CUpti_ActivityAPI *)r;
      const char *name = NULL;
      if (cuptiGetCallbackName(CUPTI_CB_DOMAIN_DRIVER_API, a->cbid, &name) != CUPTI_SUCCESS) name = NULL;
      fprintf(out, "d,%llu,%llu,%u,%u,%s\n", (unsigned long long)a->start, (unsigned long long)a->end,
              (unsigned)a->threadId, (unsigned)a->cbid, name ? name : "?");
    } else if (r->kind == CUPTI_ACTIVITY_KIND_MEMCPY) {
      MREC *m = (MREC *)r;
      fprintf(out, "m%u,%llu,%llu,%u,%llu,memcpy\n", (unsigned)m->copyKind, (unsigned long long)m->start,
              (unsigned long long)m->end, (unsigned)m->streamId, (unsigned long long)m->bytes);
    }
  }
  fflush(out);
  pthread_mutex_unlock(&mu);
  free(buf);
}

static void *flusher(void *arg) {
  long ms = (long)(size_t)arg;
  for (;;) {
    usleep(ms * 1000);
    cuptiActivityFlushAll(0);
  }
  return NULL;
}

int InitializeInjection(void) {
  const char *path = getenv("KTRACE_OUT");
  out = fopen(path ? path : "ktrace.csv", "w");
  if (!out) return 0;
  cuptiActivityRegisterCallbacks(requested, completed);
  cuptiActivityEnable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL);
  cuptiActivityEnable(CUPTI_ACTIVITY_KIND_MEMCPY);
  const char *api = getenv("KTRACE_API");
  if (api && *api && *api != '0') cuptiActivityEnable(CUPTI_ACTIVITY_KIND_DRIVER);
  const char *f = getenv("KTRACE_FLUSH_MS");
  long ms = f ? atol(f) : 300;
  pthread_t t;
  pthread_create(&t, NULL, flusher, (void *)(size_t)(ms > 0 ? ms : 300));
  pthread_detach(t);
  return 1;
}
