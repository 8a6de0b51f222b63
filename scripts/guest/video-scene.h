/*
 * video-scene.h: the scene both video painters show, kept in one place so
 * that video.img (video.c, Linux, static against libc) and video-kvm.img
 * (video-kvm.c, freestanding, no libc and no floating point) paint the
 * same pixels and codec figures on the two compare.
 *
 * A photo-like aerial landscape (fractal terrain coloured by height, lit
 * by its slope, with film grain) and a cloud layer (alpha 0..255), both
 * built once from a fixed seed and both wrapping at their edges; a frame
 * is the terrain at the camera's offset under the clouds at theirs.
 * Integer only, so it builds under -mgeneral-regs-only.
 *
 * Included once by each painter, which supplies what differs:
 *   <stdint.h> and memset          declared before the #include;
 *   scene_alloc(size), scene_free  defined by the includer: scene_alloc
 *                                  never returns NULL, and the scene frees
 *                                  in the reverse order it allocates (a
 *                                  bump allocator may free by rewinding);
 *   the camera and the framebuffer's geometry, as scene_paint's arguments
 *                                  (video.c follows the clock in seconds,
 *                                  video-kvm.c the PIT's ticks).
 */

#define TEX_BITS	10			/* terrain: 1024x1024, wraps */
#define TEX_SIZE	(1 << TEX_BITS)
#define TEX_MASK	(TEX_SIZE - 1)
#define CLOUD_BITS	9			/* clouds: 512x512, wraps */
#define CLOUD_SIZE	(1 << CLOUD_BITS)
#define CLOUD_MASK	(CLOUD_SIZE - 1)

/* Where a frame looks: the terrain's and the clouds' offsets in pixels. */
struct scene_camera {
	unsigned int	x;
	unsigned int	y;
	unsigned int	cloud_x;
	unsigned int	cloud_y;
};

static void	*scene_alloc(uint32_t);
static void	 scene_free(void *);

static uint32_t	*scene_terrain;
static uint8_t	*scene_clouds;
static uint32_t	 scene_seed = 0x9e3779b9;

/* xorshift32: a fixed seed, so every boot shows the same landscape. */
static uint32_t
scene_random(void)
{
	scene_seed ^= scene_seed << 13;
	scene_seed ^= scene_seed >> 17;
	scene_seed ^= scene_seed << 5;
	return (scene_seed);
}

static int
scene_abs(int v)
{
	return (v < 0 ? -v : v);
}

/*
 * Add fractal value noise of size x size (a power of two, wrapping at its
 * edges so the image tiles seamlessly) to out: octaves from cells of
 * size/4 down to 4 pixels, each half the amplitude of the one before.
 */
static void
scene_noise(int *out, unsigned int bits, int amplitude)
{
	unsigned int	 size = 1U << bits, mask = size - 1;
	unsigned int	 cell, cells, x, y, cx, cy, fx, fy;
	int		*lattice, fade[256], a, b, c, d, top, bottom;

	for (cell = size / 4; cell >= 4; cell /= 2, amplitude /= 2) {
		cells = size / cell;
		lattice = scene_alloc(cells * cells * sizeof *lattice);
		for (x = 0; x < cells * cells; x++)
			lattice[x] = (int)(scene_random() % 511) - 255;
		/* Smoothstep weights, 0..256, for each offset in a cell. */
		for (x = 0; x < cell; x++) {
			fx = x * 256 / cell;
			fade[x] = (int)(fx * fx * (768 - 2 * fx) / 65536);
		}
		for (y = 0; y < size; y++) {
			cy = y / cell;
			fy = (unsigned int)fade[y % cell];
			for (x = 0; x < size; x++) {
				cx = x / cell;
				fx = (unsigned int)fade[x % cell];
				a = lattice[cy * cells + cx];
				b = lattice[cy * cells + (cx + 1) % cells];
				c = lattice[((cy + 1) % cells) * cells + cx];
				d = lattice[((cy + 1) % cells) * cells +
				    (cx + 1) % cells];
				top = a * 256 + (b - a) * (int)fx;
				bottom = c * 256 + (d - c) * (int)fx;
				out[(y & mask) * size + (x & mask)] +=
				    (top * 256 + (bottom - top) * (int)fy) /
				    65536 * amplitude / 256;
			}
		}
		scene_free(lattice);
	}
}

/* A colour between two XRGB colours, t in 0..256. */
static uint32_t
scene_mix(uint32_t p, uint32_t q, int t)
{
	uint32_t	r, g, b;

	r = (((p >> 16) & 0xff) * (256 - t) + ((q >> 16) & 0xff) * t) >> 8;
	g = (((p >> 8) & 0xff) * (256 - t) + ((q >> 8) & 0xff) * t) >> 8;
	b = ((p & 0xff) * (256 - t) + (q & 0xff) * t) >> 8;
	return (r << 16 | g << 8 | b);
}

/*
 * Build the terrain (height coloured like an aerial photo: sea, beach,
 * fields, forest, rock, snow; shaded by the slope towards the light) and
 * the cloud cover.  The heights are allocated last so they are freed
 * first.
 */
static void
scene_world(void)
{
	static const struct {
		int		height;
		uint32_t	colour;
	} bands[] = {
		{ -400, 0x0b2a55 }, { -40, 0x1f5f8b }, { 0, 0xc9b98a },
		{ 25, 0x7d9a4a }, { 110, 0x3f6b2a }, { 190, 0x6e6253 },
		{ 260, 0xe9eef2 }, { 1000, 0xffffff },
	};
	int		*height, h, shade, n, i;
	unsigned int	 x, y;
	uint32_t	 p, r, g, b;

	scene_terrain = scene_alloc(TEX_SIZE * TEX_SIZE *
	    sizeof *scene_terrain);
	scene_clouds = scene_alloc(CLOUD_SIZE * CLOUD_SIZE);
	height = scene_alloc(TEX_SIZE * TEX_SIZE * sizeof *height);
	memset(height, 0, TEX_SIZE * TEX_SIZE * sizeof *height);
	scene_noise(height, TEX_BITS, 400);
	for (y = 0; y < TEX_SIZE; y++) {
		for (x = 0; x < TEX_SIZE; x++) {
			h = height[y * TEX_SIZE + x];
			for (i = 1; bands[i].height < h && i < 7; i++)
				;
			n = bands[i].height - bands[i - 1].height;
			p = scene_mix(bands[i - 1].colour, bands[i].colour,
			    h < bands[i - 1].height ? 0 :
			    (h - bands[i - 1].height) * 256 / n);
			/* Light from the north-west; the sea stays flat. */
			shade = h < 0 ? 0 : (h - height[((y + 1) & TEX_MASK) *
			    TEX_SIZE + ((x + 1) & TEX_MASK)]) * 6;
			/* Grain, as film or a sensor has. */
			shade += (int)(scene_random() % 17) - 8;
			r = (uint32_t)scene_abs((int)(p >> 16 & 0xff) + shade);
			g = (uint32_t)scene_abs((int)(p >> 8 & 0xff) + shade);
			b = (uint32_t)scene_abs((int)(p & 0xff) + shade);
			scene_terrain[y * TEX_SIZE + x] =
			    (r > 255 ? 255 : r) << 16 |
			    (g > 255 ? 255 : g) << 8 | (b > 255 ? 255 : b);
		}
	}
	memset(height, 0, CLOUD_SIZE * CLOUD_SIZE * sizeof *height);
	scene_noise(height, CLOUD_BITS, 300);
	for (x = 0; x < CLOUD_SIZE * CLOUD_SIZE; x++) {
		h = (height[x] - 110) * 2;
		scene_clouds[x] = h < 0 ? 0 : h > 210 ? 210 : (uint8_t)h;
	}
	scene_free(height);
}

/*
 * Paint width x height pixels (rows stride pixels apart) of the scene as
 * camera sees it.  Each painter calls it from one place, so it is inlined
 * there with that painter's geometry.
 */
static void
scene_paint(uint32_t *pixels, unsigned int width, unsigned int height,
    unsigned int stride, const struct scene_camera *camera)
{
	/* Locals: out may alias *camera, which would be reread per pixel. */
	unsigned int	 ox = camera->x, oy = camera->y;
	unsigned int	 cx = camera->cloud_x, cy = camera->cloud_y;
	unsigned int	 x, y, tx;
	const uint32_t	*trow;
	const uint8_t	*crow;
	uint32_t	*out, p, rb, g, a;

	for (y = 0; y < height; y++) {
		trow = scene_terrain + ((y + oy) & TEX_MASK) * TEX_SIZE;
		crow = scene_clouds + ((y + cy) & CLOUD_MASK) * CLOUD_SIZE;
		out = pixels + y * stride;
		for (x = 0; x < width; x++) {
			tx = (x + ox) & TEX_MASK;
			p = trow[tx];
			a = crow[(x + cx) & CLOUD_MASK];
			if (a != 0) {
				/* To white by a/256, two channels at once. */
				rb = p & 0xff00ff;
				g = p & 0xff00;
				rb += (((0xff00ff - rb) * a) >> 8) & 0xff00ff;
				g += (((0xff00 - g) * a) >> 8) & 0xff00;
				p = rb | g;
			}
			out[x] = p;
		}
	}
}
