/* turbo-edge C API: run a turbo-edge bundle (a few-step text-to-video student) from C, C++ or any FFI.
 *
 *   te_pipeline_params pp = te_pipeline_default_params();
 *   pp.bundle = "bundles/student";
 *   te_pipeline* pipe = NULL;
 *   if (te_pipeline_open(&pp, &pipe) != TE_OK) { fprintf(stderr, "%s\n", te_last_error(NULL)); return 1; }
 *   te_generate_params gp = te_generate_default_params();
 *   gp.seed = 3;
 *   te_clip* clip = NULL;
 *   if (te_generate(pipe, "a red circle moving left", &gp, &clip) != TE_OK) fprintf(stderr, "%s\n", te_last_error(pipe));
 *   else { use te_clip_data(clip): uint8 RGB [te_clip_frames, te_clip_height, te_clip_width, 3]; te_clip_free(clip); }
 *   te_pipeline_close(pipe);
 *
 * The same bundle, prompt and seed give the frames of the Python runtime's Pipeline.generate (within 1 per uint8
 * value) on the same backend.
 *
 * Errors: every function that can fail returns an int status (TE_OK = 0) and never lets a C++ exception out.
 * te_last_error(pipeline) is the one-line message of the calling thread's last failed call on that pipeline;
 * te_last_error(NULL) that of its last failed call made without a pipeline (te_pipeline_open, a NULL pipeline).
 *
 * Threads: a te_pipeline may be shared by several threads. Calls on one pipeline run one at a time (they queue on
 * the pipeline's lock, and each gives the clip it would give alone); distinct pipelines run in parallel. A te_clip
 * is an independent value. te_pipeline_close must not race with other calls on the same pipeline.
 *
 * ABI: only te_* symbols are exported; structs are passed by pointer and filled from the *_default_params()
 * functions, so always start from those. 0.x releases may change the ABI at each minor version (SOVERSION 0.MINOR).
 */
#ifndef TURBO_EDGE_H
#define TURBO_EDGE_H

#include <stddef.h>
#include <stdint.h>

#define TE_VERSION_MAJOR 0
#define TE_VERSION_MINOR 3
#define TE_VERSION_PATCH 0

#if defined(__GNUC__)
#define TE_API __attribute__((visibility("default")))
#else
#define TE_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Status codes. */
enum {
  TE_OK = 0,
  TE_ERR_INVALID_ARGUMENT = 1, /* a NULL pointer or a params field outside its contract (a caller bug) */
  TE_ERR_BUNDLE = 2,           /* the bundle is missing, changed after export, or malformed */
  TE_ERR_INPUT = 3,            /* a request value: prompt, steps, seed, guidance, frames, threads, precision */
  TE_ERR_BACKEND = 4,          /* the inference backend is not built in, or failed to load / run a graph */
  TE_ERR_CANCELLED = 5,        /* the progress callback returned nonzero */
  TE_ERR_OUT_OF_MEMORY = 6,
  TE_ERR_INTERNAL = 7          /* a bug in turbo-edge: please report it with the message */
};

typedef struct te_pipeline te_pipeline; /* opaque: a loaded bundle with its compiled graphs */
typedef struct te_clip te_clip;         /* opaque: one generated clip */

typedef struct te_pipeline_params {
  const char* bundle;    /* bundle directory (required) */
  const char* backend;   /* "openvino" (the one backend of the C runtime) */
  const char* precision; /* "fp32" or "int8" (the UNet's graph; the others stay fp32) */
  int threads;           /* inference threads, in [1, 4x the machine's cores]; default 1 */
  int verify;            /* nonzero: check every file's sha256 against the manifest at open; default 1. 0 skips only the
                            hashing (paths must still stay inside the bundle): a changed graph then runs as it is */
  const char* decoder;   /* one of the bundle's decoders: "full", "tiny", ... (its manifest's "decoders"); NULL (default):
                            the bundle's default. A name the bundle lacks fails with TE_ERR_BUNDLE naming those it has.
                            Appended in 0.2: the fields before it keep their offsets */
} te_pipeline_params;

/* Called after each sampling step: step = steps done so far (1..total), total = steps of the whole call (for
 * te_generate_batch, of all its prompts). Return 0 to go on, nonzero to cancel: the call then returns
 * TE_ERR_CANCELLED and gives no clip. Runs on the calling thread, under the pipeline's lock: do not call into the
 * same pipeline from it. */
typedef int (*te_progress_fn)(int step, int total, void* user_data);

typedef struct te_generate_params {
  int steps;                /* sampling steps, one of the bundle's supported list; 0 = the bundle's default */
  int use_default_guidance; /* nonzero (default): the bundle's guidance; 0: use `guidance` */
  double guidance;          /* finite, in [0, 100], used when use_default_guidance is 0. Default NAN: clearing the
                               flag without a value, or giving a value with the flag still set, is refused */
  uint64_t seed;            /* in [0, 2**63); default 0 */
  te_progress_fn progress;  /* optional; NULL = no reports, no cancellation */
  void* user_data;          /* passed to progress */
  int frames;               /* the clip length; 0 (default) = the bundle's. A bundle exported for a range of lengths
                               (export --min-frames / --max-frames) serves each 1 + 4k in it; another length fails with
                               TE_ERR_INPUT and the Python runtime's one-line message. Appended in 0.3: the fields
                               before it keep their offsets */
} te_generate_params;

TE_API const char* te_version(void); /* "MAJOR.MINOR.PATCH" of the library actually loaded */
TE_API const char* te_status_name(int status); /* "TE_OK", "TE_ERR_BUNDLE", ...; "unknown" otherwise */

TE_API te_pipeline_params te_pipeline_default_params(void);
/* Loads and (by default) verifies the bundle and compiles its graphs. On success *out is a pipeline to pass to
 * te_pipeline_close; on failure *out is NULL and te_last_error(NULL) says why. */
TE_API int te_pipeline_open(const te_pipeline_params* params, te_pipeline** out);
TE_API void te_pipeline_close(te_pipeline* pipeline); /* NULL is a no-op */

TE_API te_generate_params te_generate_default_params(void);
/* One clip for `prompt` (UTF-8, non-empty, at most 2000 characters; a closed-vocabulary bundle accepts only its
 * words). params NULL = te_generate_default_params(). On success *out is a clip to pass to te_clip_free; on
 * failure *out is NULL. */
TE_API int te_generate(te_pipeline* pipeline, const char* prompt, const te_generate_params* params, te_clip** out);
/* n clips, outs[i] for prompts[i]: each exactly the clip te_generate(pipeline, prompts[i], params) gives (the same
 * seed for every prompt; the Python runtime's generate_batch instead gives prompt i the noise streams of index i).
 * All or nothing: on failure every outs[i] is NULL and the message names the failing prompt's index. */
TE_API int te_generate_batch(te_pipeline* pipeline, const char* const* prompts, size_t n, const te_generate_params* params,
                             te_clip** outs);

TE_API int te_clip_frames(const te_clip* clip);
TE_API int te_clip_height(const te_clip* clip);
TE_API int te_clip_width(const te_clip* clip);
TE_API int te_clip_steps(const te_clip* clip);     /* the sampling steps it was generated with */
TE_API int te_clip_truncated(const te_clip* clip); /* nonzero: the prompt was longer than the text encoder's tokens */
/* uint8 RGB, frames x height x width x 3, row-major (frames: the length asked for); valid until te_clip_free. */
TE_API const uint8_t* te_clip_data(const te_clip* clip);
TE_API size_t te_clip_size(const te_clip* clip); /* bytes at te_clip_data */
TE_API void te_clip_free(te_clip* clip);          /* NULL is a no-op */

/* The calling thread's last error message on `pipeline` (NULL: on calls made without one); "" if none. Valid until
 * this thread's next failing call on the same pipeline (or te_pipeline_close). */
TE_API const char* te_last_error(const te_pipeline* pipeline);

#ifdef __cplusplus
}
#endif

#endif /* TURBO_EDGE_H */
