/*
 * bdi.h - the kernel's dirty-page limits for the mount.
 */
#ifndef H5M_BDI_H
#define H5M_BDI_H

/*
 * Give the mount at real_mountpoint (a realpath taken before mounting:
 * resolving it now would ask this daemon before it serves) the dirty-page
 * limits of an ordinary disk: strict_limit off, max_ratio 50. Root only;
 * a no-op elsewhere, and when the kernel refuses (logged at debug level).
 */
void bdi_lift_dirty_limit(const char *real_mountpoint);

#endif
