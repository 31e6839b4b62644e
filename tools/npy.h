/*
 * npy.h - reading and writing NumPy .npy files that hold little-endian
 * float32 arrays (and int32/int64 ones, for lengths) in C order, for the
 * clattn tools and tests.
 *
 * The reader takes format versions 1.0, 2.0 and 3.0 and refuses everything
 * else with a one-line message: it checks the header against the file's size
 * before it allocates anything, so a lying header cannot make it allocate a
 * huge buffer or read past the end. A file with bytes after the array is
 * refused too, because np.save never writes such a file and extra bytes
 * usually mean the header's shape is wrong. The writer writes version 1.0
 * headers padded to 64 bytes, as NumPy does.
 *
 * Messages start with the file's path, are always terminated, and are one
 * line: control characters (say, a newline in a path) are replaced by '?'.
 * err may be NULL or errlen 0 when the caller wants no message.
 */
#ifndef CLATTN_NPY_H
#define CLATTN_NPY_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The longest header dictionary the reader accepts. NumPy itself refuses
 * headers over 10,000 bytes unless told otherwise. */
#define CLATTN_NPY_MAX_HEADER 65536u

/* The most dimensions the writer writes; NumPy 2 allows 64. */
#define CLATTN_NPY_MAX_NDIM 64u

/* Reads the float32 array in `path`. On success returns 0, sets *ndim (0 for
 * a scalar), shape[0 .. *ndim-1] and *data, a malloc'd array of the product of
 * the shape's elements (at least one byte even for an empty array) that the
 * caller frees. `shape` has room for max_ndim entries; an array with more
 * dimensions is refused, as is one of more than max_bytes bytes of data.
 * On failure returns non-zero, sets *ndim to 0 and *data to NULL, and writes
 * the reason into err. */
int clattn_npy_read_f32(const char *path, size_t max_ndim, size_t max_bytes,
                        size_t *ndim, size_t *shape, float **data, char *err,
                        size_t errlen);

/* Reads an integer array ('<i4' or '<i8') as clattn_npy_read_f32 reads a
 * float32 one; *data receives the values widened to int64. */
int clattn_npy_read_int(const char *path, size_t max_ndim, size_t max_bytes,
                        size_t *ndim, size_t *shape, int64_t **data, char *err,
                        size_t errlen);

/* Writes data (the product of shape's ndim entries, in C order; a scalar when
 * ndim is 0) to `path`, replacing the file. Returns 0 on success, non-zero
 * with the reason in err on failure, which may leave a partial file. */
int clattn_npy_write_f32(const char *path, const float *data, size_t ndim,
                         const size_t *shape, char *err, size_t errlen);
/* The same for an int32 array ('<i4'). */
int clattn_npy_write_i32(const char *path, const int32_t *data, size_t ndim,
                         const size_t *shape, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif /* CLATTN_NPY_H */
