/* Generate one clip with the turbo-edge C API and write its frames as raw RGB (plus the first as a PPM).
 *
 *   turbo_edge_c_app BUNDLE PROMPT SEED OUT_PREFIX [FRAMES]
 *
 * FRAMES: the clip length (te_generate_params.frames); left out or 0, the bundle's.
 * writes OUT_PREFIX.rgb (uint8 [frames, height, width, 3]) and OUT_PREFIX.ppm (frame 0), and prints one line:
 * frames, height, width and an FNV-1a checksum of the RGB bytes. Errors: the C API's message, exit status 1. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "turbo_edge/turbo_edge.h"

static int write_file(const char* path, const char* header, const uint8_t* data, size_t size) {
  FILE* f = fopen(path, "wb");
  if (f == NULL) {
    fprintf(stderr, "error: cannot write %s: %s\n", path, strerror(errno));
    return 0;
  }
  int ok = fputs(header, f) >= 0 && fwrite(data, 1, size, f) == size;
  ok = fclose(f) == 0 && ok;
  if (!ok) fprintf(stderr, "error: writing %s failed; check the disk has space\n", path);
  return ok;
}

int main(int argc, char** argv) {
  if (argc != 5 && argc != 6) {
    fprintf(stderr, "usage: %s BUNDLE PROMPT SEED OUT_PREFIX [FRAMES]\n", argv[0]);
    return 2;
  }
  char* end = NULL;
  errno = 0;
  unsigned long long seed = strtoull(argv[3], &end, 10);
  if (errno != 0 || end == argv[3] || *end != '\0' || argv[3][0] == '-') {
    fprintf(stderr, "error: seed must be an integer in [0, 2**63), got '%s'\n", argv[3]);
    return 2;
  }
  long frames_asked = 0;
  if (argc == 6) {
    errno = 0;
    frames_asked = strtol(argv[5], &end, 10);
    if (errno != 0 || end == argv[5] || *end != '\0' || frames_asked < 0 || frames_asked > 100000) {
      fprintf(stderr, "error: frames must be an integer in [0, 100000], got '%s'\n", argv[5]);
      return 2;
    }
  }

  te_pipeline_params pp = te_pipeline_default_params();
  pp.bundle = argv[1];
  te_pipeline* pipe = NULL;
  int status = te_pipeline_open(&pp, &pipe);
  if (status != TE_OK) {
    fprintf(stderr, "error: %s (%s)\n", te_last_error(NULL), te_status_name(status));
    return 1;
  }
  te_generate_params gp = te_generate_default_params();
  gp.seed = (uint64_t)seed;
  gp.frames = (int)frames_asked;
  te_clip* clip = NULL;
  status = te_generate(pipe, argv[2], &gp, &clip);
  if (status != TE_OK) {
    fprintf(stderr, "error: %s (%s)\n", te_last_error(pipe), te_status_name(status));
    te_pipeline_close(pipe);
    return 1;
  }

  const uint8_t* rgb = te_clip_data(clip);
  const int frames = te_clip_frames(clip), height = te_clip_height(clip), width = te_clip_width(clip);
  uint64_t checksum = 1469598103934665603ULL; /* FNV-1a, 64 bit */
  for (size_t i = 0; i < te_clip_size(clip); ++i) checksum = (checksum ^ rgb[i]) * 1099511628211ULL;

  char path[4096], header[64];
  int ok = snprintf(path, sizeof path, "%s.rgb", argv[4]) < (int)sizeof path && write_file(path, "", rgb, te_clip_size(clip));
  snprintf(header, sizeof header, "P6\n%d %d\n255\n", width, height);
  ok = ok && snprintf(path, sizeof path, "%s.ppm", argv[4]) < (int)sizeof path &&
       write_file(path, header, rgb, (size_t)height * (size_t)width * 3);
  if (ok) printf("frames=%d height=%d width=%d fnv1a=%016" PRIx64 " turbo_edge=%s\n", frames, height, width, checksum, te_version());
  te_clip_free(clip);
  te_pipeline_close(pipe);
  return ok ? 0 : 1;
}
