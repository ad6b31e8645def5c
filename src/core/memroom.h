/*
 * memroom.h - how much memory this process may use: the machine's RAM, or
 * less where its memory cgroup says so.
 */
#ifndef H5M_MEMROOM_H
#define H5M_MEMROOM_H

#include <stdint.h>

/*
 * The room in bytes: physical RAM, or, when smaller, what the memory
 * cgroup of this process allows minus what it already uses, taken over
 * the group and every parent (cgroup v2 memory.max and memory.current,
 * under /sys/fs/cgroup or /sys/fs/cgroup/unified; v1
 * memory.limit_in_bytes and memory.usage_in_bytes under
 * /sys/fs/cgroup/memory). *from says which ("RAM", or "cgroup" and the
 * group's path in *group, which the caller frees; NULL for RAM).
 * 0 when nothing is known.
 */
uint64_t memroom_bytes(const char **from, char **group);

#endif
