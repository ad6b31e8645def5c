/*
 * h5check.c - in-place validation of HDF5 images with libhdf5.
 */
#include "h5check.h"
#include "h5internal.h"

#include <errno.h>
#include <hdf5.h>
#include <hdf5_hl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static pthread_mutex_t h5_lock = PTHREAD_MUTEX_INITIALIZER;

static const uint8_t sig[8] = { 0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n' };

static void h5_setup(void)
{
	/* never print to the daemon's stderr: reasons go through *why */
	H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

/* Keep the innermost message of the error stack: the most precise. */
static herr_t take_desc(unsigned n, const H5E_error2_t *e, void *data)
{
	char *why = data;

	(void)n;
	if (e->desc && *e->desc)
		snprintf(why, 256, "%s", e->desc);
	return 0;
}

static void record_error(struct h5_report *r, const char *fallback)
{
	r->why[0] = '\0';
	H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, take_desc, r->why);
	if (!r->why[0])
		snprintf(r->why, sizeof(r->why), "%s", fallback);
	H5Eclear2(H5E_DEFAULT);
}

struct visit {
	struct h5_report *r;
	bool bad;
};

/* Read each object's header; open datasets to read their layout. */
static herr_t visit_obj(hid_t obj, const char *name, const H5O_info_t *info,
			void *data)
{
	struct visit *v = data;
	hid_t id;

	v->r->objects++;
	if (info->type != H5O_TYPE_DATASET)
		return 0;
	id = H5Dopen2(obj, name, H5P_DEFAULT);
	if (id < 0) {
		v->bad = true;
		return -1;
	}
	hid_t sp = H5Dget_space(id), ty = H5Dget_type(id);

	if (sp < 0 || ty < 0)
		v->bad = true;
	if (sp >= 0)
		H5Sclose(sp);
	if (ty >= 0)
		H5Tclose(ty);
	H5Dclose(id);
	return v->bad ? -1 : 0;
}

static bool try_open(void *p, size_t size, struct h5_report *r)
{
	struct visit v = { r, false };
	hid_t f;
	herr_t ret;

	f = H5LTopen_file_image(p, size,
				H5LT_FILE_IMAGE_DONT_COPY |
					H5LT_FILE_IMAGE_DONT_RELEASE);
	if (f < 0) {
		record_error(r, "libhdf5 cannot open the file");
		return false;
	}
	r->objects = 0;
	ret = H5Ovisit2(f, H5_INDEX_NAME, H5_ITER_NATIVE, visit_obj, &v,
			H5O_INFO_BASIC);
	if (ret < 0 || v.bad)
		record_error(r, "an object of the file cannot be read");
	if (H5Fclose(f) < 0 && !(ret < 0 || v.bad)) {
		record_error(r, "libhdf5 cannot close the file");
		return false;
	}
	return !(ret < 0 || v.bad);
}

/*
 * Superblock v2/v3: signature, version, sizeof offsets, sizeof lengths,
 * status flags (byte 11), four addresses, checksum. Clear the flags in
 * the private mapping and fix the checksum.
 */
static bool clear_status_flags(uint8_t *sb, uint64_t avail)
{
	size_t so = sb[9], len = 12 + 4 * so;

	if (so != 2 && so != 4 && so != 8)
		return false;
	if (len + 4 > avail)
		return false;
	sb[11] = 0;
	uint32_t c = h5_lookup3(sb, len, 0);

	for (int i = 0; i < 4; i++)
		sb[len + i] = (uint8_t)(c >> (8 * i));
	return true;
}

/* The superblock's offset, read with pread: no page is touched. */
static int64_t find_signature_fd(int fd, uint64_t size)
{
	uint8_t b[8];

	for (uint64_t off = 0; off + 8 <= size; off = off ? off * 2 : 512)
		if (pread(fd, b, 8, (off_t)off) == 8 && !memcmp(b, sig, 8))
			return (int64_t)off;
	return -1;
}

/*
 * Map the image for libhdf5. Without holes: the memfd itself, private
 * and writable, so only a patched superblock page is ever copied.
 * With holes (a sparse image): an anonymous mapping holding only the
 * data regions, since touching a hole of a tmpfs file allocates it (and
 * raises SIGBUS when the budget is full).
 */
static uint8_t *map_image(int fd, uint64_t size)
{
	off_t hole = lseek(fd, 0, SEEK_HOLE), pos = 0;
	uint8_t *p;

	if (hole < 0 || (uint64_t)hole >= size) {
		p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
		return p == MAP_FAILED ? NULL : p;
	}
	p = mmap(NULL, size, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	while ((uint64_t)pos < size) {
		off_t data = lseek(fd, pos, SEEK_DATA), end;

		if (data < 0)
			break;
		end = lseek(fd, data, SEEK_HOLE);
		if (end < 0 || (uint64_t)end > size)
			end = (off_t)size;
		for (off_t o = data; o < end;) {
			ssize_t n = pread(fd, p + o, (size_t)(end - o), o);

			if (n <= 0)
				break;
			o += n;
		}
		pos = end;
	}
	return p;
}

void h5_lock_take(void)
{
	pthread_mutex_lock(&h5_lock);
}

void h5_lock_drop(void)
{
	pthread_mutex_unlock(&h5_lock);
}

int h5_signature(int fd, uint64_t size)
{
	return size < 8 || size > SIZE_MAX ? -1 :
	       (int)(find_signature_fd(fd, size) >= 0 ? 1 : 0);
}

static int inspect(int fd, uint64_t size, struct h5_report *r, bool held);

static bool size_ok(uint8_t n)
{
	return n == 2 || n == 4 || n == 8 || n == 16;
}

/*
 * A superblock of a version this libhdf5 knows (0 to 3), with sizes it
 * can hold and, for versions 2 and 3, the checksum it carries.
 */
static bool superblock_sound(const uint8_t *sb, uint64_t avail)
{
	size_t len;
	uint32_t stored;

	if (avail < 16)
		return false;
	switch (sb[8]) {
	case 0:
	case 1:
		return size_ok(sb[13]) && size_ok(sb[14]) && sb[13] != 16;
	case 2:
	case 3:
		if (!size_ok(sb[9]) || !size_ok(sb[10]) || sb[9] == 16)
			return false;
		len = 12 + 4 * (size_t)sb[9];
		if (len + 4 > avail)
			return false;
		stored = (uint32_t)sb[len] | (uint32_t)sb[len + 1] << 8 |
			 (uint32_t)sb[len + 2] << 16 |
			 (uint32_t)sb[len + 3] << 24;
		return h5_lookup3(sb, len, 0) == stored;
	default:
		return false;
	}
}

/*
 * libhdf5 refused a version number it does not know (of the superblock,
 * an object header, a message, a heap...): most likely a file written by
 * a newer HDF5 in a newer format, not a damaged one.
 */
static bool refused_a_version(const struct h5_report *r)
{
	return r->sb_version > 3 ||
	       (strcasestr(r->why, "version") && !strstr(r->why, "mismatch"));
}

int h5_inspect(int fd, uint64_t size, struct h5_report *r)
{
	return inspect(fd, size, r, false);
}

int h5_inspect_held(int fd, uint64_t size, struct h5_report *r)
{
	return inspect(fd, size, r, true);
}

static int inspect(int fd, uint64_t size, struct h5_report *r, bool held)
{
	uint8_t *p;
	int64_t base;

	memset(r, 0, sizeof(*r));
	r->sb_version = -1;
	if (size < 8)
		return 0;
	if (size > SIZE_MAX)
		return -EFBIG;
	base = find_signature_fd(fd, size);
	if (base < 0)
		return 0; /* not HDF5: nothing mapped */
	p = map_image(fd, size);
	if (!p)
		return -errno;
	r->is_hdf5 = true;
	r->base = (uint64_t)base;
	if ((uint64_t)base + 12 <= size) {
		uint8_t *sb = p + base;

		r->sb_version = sb[8];
		r->sb_sound = superblock_sound(sb, size - (uint64_t)base);
		if (sb[8] >= 2) {
			r->writer_open = sb[11] & 0x1;
			r->swmr = sb[11] & 0x4;
		}
	}
	if (!held)
		pthread_mutex_lock(&h5_lock);
	h5_setup(); /* per thread in a thread-safe libhdf5: every time */
	if (r->writer_open || r->swmr) {
		if (clear_status_flags(p + base, size - (uint64_t)base))
			r->opens = try_open(p, size, r);
		else
			snprintf(r->why, sizeof(r->why),
				 "superblock too short");
	} else {
		r->opens = try_open(p, size, r);
	}
	r->newer = !r->opens && refused_a_version(r);
	if (!held)
		pthread_mutex_unlock(&h5_lock);
	munmap(p, size);
	return 0;
}
