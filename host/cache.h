/*
 * cache.h - the disk cache of built program binaries.
 *
 * An entry is one file named by a hash of its key; the file holds the whole
 * key (source, build options, device, driver, platform and library versions)
 * and a checksum, so a colliding, truncated, corrupt or foreign entry is
 * detected and rebuilt, never used. Entries are written to a temporary file
 * and renamed into place, so concurrent writers never expose a partial file.
 *
 * CLATTN_CACHE=0 turns the cache off; CLATTN_CACHE_DIR chooses the folder,
 * else $XDG_CACHE_HOME/clattn, else $HOME/.cache/clattn.
 */
#ifndef CLATTN_CACHE_H
#define CLATTN_CACHE_H

#include <stddef.h>

/* Loads the binary stored under key into *bin (malloc'd, caller frees).
 * Returns 0 if there is none or it is unusable. */
/* What else, outside the program's source, options and device strings,
 * steers a runtime's compiler, as text for the cache key (a heap string, or
 * NULL when out of memory): the environment variables the known runtimes
 * read for code generation (Intel's CL_CONFIG_*, PoCL's target and
 * work-group method), and for a CPU device the vector ISA this process
 * sees (a CPU runtime compiles for it: under an emulator, or with Intel's
 * CL_CONFIG_CPU_TARGET_ARCH, the same device name gets narrower code). */
char *clattn__cache_compiler_env(int is_cpu);

int clattn__cache_load(const char *key, size_t key_len, unsigned char **bin,
                       size_t *bin_len);

/* Stores a binary under key; failures are silent (the cache is optional). */
void clattn__cache_store(const char *key, size_t key_len,
                         const unsigned char *bin, size_t bin_len);

#endif /* CLATTN_CACHE_H */
