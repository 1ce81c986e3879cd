/* make_samples: writes the small sample images the integration tests upload (JPEG, WebP and GIF;
 * node has no encoder for these, and tests/integration/media.test.mjs makes its PNGs itself).
 * Run once; the outputs are committed under tests/media/samples/. Not part of the build:
 *
 *   cc -O2 -o /tmp/make_samples tests/media/make_samples.c $(pkg-config --cflags --libs vips)
 *   /tmp/make_samples tests/media/samples
 *
 * Each image is a colour gradient with a few stripes (so thumbnails have something to show)
 * and a size over the 320 px thumbnail, so that the thumbnail is a real downscale. */
#include <stdio.h>
#include <stdlib.h>

#include <vips/vips.h>

/* A w x h sRGB gradient: red across, green down, blue in stripes. */
static VipsImage *gradient(int w, int h) {
  VipsImage *xy, *x, *y, *r, *g, *b, *bands[3], *rgb, *u8;
  if (vips_xyz(&xy, w, h, NULL)) return NULL;
  vips_extract_band(xy, &x, 0, NULL);
  vips_extract_band(xy, &y, 1, NULL);
  vips_linear1(x, &r, 255.0 / w, 0, NULL);
  vips_linear1(y, &g, 255.0 / h, 0, NULL);
  VipsImage *m;
  vips_remainder_const1(x, &m, 64, NULL);
  vips_linear1(m, &b, 4.0, 0, NULL);
  bands[0] = r, bands[1] = g, bands[2] = b;
  vips_bandjoin(bands, &rgb, 3, NULL);
  vips_cast_uchar(rgb, &u8, NULL);
  VipsImage *out;
  vips_copy(u8, &out, "interpretation", VIPS_INTERPRETATION_sRGB, NULL);
  g_object_unref(xy), g_object_unref(x), g_object_unref(y), g_object_unref(r), g_object_unref(g);
  g_object_unref(m), g_object_unref(b), g_object_unref(rgb), g_object_unref(u8);
  return out;
}

int main(int argc, char **argv) {
  if (argc != 2 || VIPS_INIT(argv[0])) {
    fprintf(stderr, "usage: make_samples OUTDIR\n");
    return 2;
  }
  char path[4096];
  VipsImage *im = gradient(640, 480);
  snprintf(path, sizeof path, "%s/sample.jpg", argv[1]);
  if (!im || vips_jpegsave(im, path, "Q", 85, "strip", TRUE, NULL)) goto fail;
  g_object_unref(im);

  im = gradient(500, 400);
  snprintf(path, sizeof path, "%s/sample.webp", argv[1]);
  if (!im || vips_webpsave(im, path, "Q", 80, "strip", TRUE, NULL)) goto fail;
  g_object_unref(im);

  im = gradient(400, 300);
  snprintf(path, sizeof path, "%s/sample.gif", argv[1]);
  if (!im || vips_gifsave(im, path, NULL)) goto fail;
  g_object_unref(im);
  return 0;
fail:
  fprintf(stderr, "make_samples: %s\n", vips_error_buffer());
  return 1;
}
