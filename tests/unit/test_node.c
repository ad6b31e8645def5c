/*
 * Unit tests of the namespace: names, links, paths, lifetimes, xattrs.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/node.h"

static struct ns ns;

static void setup(void)
{
	cr_assert_eq(ns_init(&ns, 0755, 65536), 0);
}

static void teardown(void)
{
	ns_destroy(&ns);
}

TestSuite(node, .init = setup, .fini = teardown);

static struct node *add(struct node *dir, const char *name, mode_t mode)
{
	struct node *n = ns_node_new(&ns, mode, 0, 0);

	cr_assert_not_null(n);
	cr_assert_eq(ns_link(&ns, dir, name, n), 0);
	return n;
}

static void expect_path(const struct node *n, const char *want)
{
	bool unlinked;
	char *p = ns_path(&ns, n, &unlinked);

	cr_assert_str_eq(p, want);
	free(p);
}

Test(node, a_linked_name_is_found_and_has_a_path)
{
	struct node *d = add(ns.root, "dir", S_IFDIR | 0755);
	struct node *f = add(d, "file", S_IFREG | 0644);

	cr_assert_eq(ns_find(&ns, d, "file")->node, f);
	cr_assert_null(ns_find(&ns, ns.root, "file"));
	expect_path(f, "dir/file");
	expect_path(ns.root, "");
	cr_assert_eq(ns_nlink(ns.root), 3);
}

Test(node, thousands_of_names_stay_findable_as_the_table_grows)
{
	char name[32];

	for (int i = 0; i < 5000; i++) {
		snprintf(name, sizeof(name), "f%d", i);
		add(ns.root, name, S_IFREG | 0644);
	}
	for (int i = 0; i < 5000; i++) {
		snprintf(name, sizeof(name), "f%d", i);
		cr_assert_not_null(ns_find(&ns, ns.root, name));
	}
	cr_assert_eq(ns.root->nchildren, 5000);
}

Test(node, a_hard_link_counts_and_survives_the_first_unlink)
{
	struct node *f = add(ns.root, "a", S_IFREG | 0644);

	cr_assert_eq(ns_link(&ns, ns.root, "b", f), 0);
	cr_assert_eq(ns_nlink(f), 2);
	ns_unlink(&ns, ns_find(&ns, ns.root, "a"));
	cr_assert_eq(ns_nlink(f), 1);
	expect_path(f, "b");
}

Test(node, an_unlinked_node_lives_while_the_kernel_holds_it)
{
	struct node *f = add(ns.root, "a", S_IFREG | 0644);
	uint64_t before;

	f->nlookup = 1;
	ns_unlink(&ns, ns_find(&ns, ns.root, "a"));
	before = ns.nodes;
	cr_assert_eq(f->nlinks, 0);
	ns_forget(&ns, f, 1);
	cr_assert_eq(ns.nodes, before - 1);
}

Test(node, moving_a_name_replaces_the_target)
{
	struct node *a = add(ns.root, "a", S_IFREG | 0644);
	struct node *d = add(ns.root, "d", S_IFDIR | 0755);

	add(d, "b", S_IFREG | 0644);
	cr_assert_eq(ns_move(&ns, ns_find(&ns, ns.root, "a"), d, "b"), 0);
	cr_assert_eq(ns_find(&ns, d, "b")->node, a);
	cr_assert_null(ns_find(&ns, ns.root, "a"));
	cr_assert_eq(d->nchildren, 1);
	expect_path(a, "d/b");
}

Test(node, exchange_swaps_two_names)
{
	struct node *a = add(ns.root, "a", S_IFREG | 0644);
	struct node *b = add(ns.root, "b", S_IFDIR | 0755);

	ns_exchange(&ns, ns_find(&ns, ns.root, "a"),
		    ns_find(&ns, ns.root, "b"));
	cr_assert_eq(ns_find(&ns, ns.root, "a")->node, b);
	cr_assert_eq(ns_find(&ns, ns.root, "b")->node, a);
	expect_path(a, "b");
}

Test(node, ancestors_are_recognised)
{
	struct node *d = add(ns.root, "d", S_IFDIR | 0755);
	struct node *e = add(d, "e", S_IFDIR | 0755);

	cr_assert(ns_is_ancestor(d, e));
	cr_assert(ns_is_ancestor(ns.root, e));
	cr_assert_not(ns_is_ancestor(e, d));
}

Test(node, xattrs_follow_create_and_replace_rules)
{
	struct node *f = add(ns.root, "f", S_IFREG | 0644);
	char buf[8];
	size_t len;

	cr_assert_eq(ns_xattr_set(f, "user.a", "1", 1, 0), 0);
	cr_assert_eq(ns_xattr_set(f, "user.a", "2", 1, 1), -EEXIST);
	cr_assert_eq(ns_xattr_set(f, "user.b", "2", 1, 2), -ENODATA);
	cr_assert_eq(ns_xattr_get(f, "user.a", buf, sizeof(buf), &len), 0);
	cr_assert_eq(len, 1);
	cr_assert_eq(buf[0], '1');
	cr_assert_eq(ns_xattr_get(f, "user.a", buf, 0, &len), 0);
	cr_assert_eq(ns_xattr_get(f, "user.zz", buf, 8, &len), -ENODATA);
	cr_assert_eq(ns_xattr_list(f, true, buf, 1, &len), -ERANGE);
	cr_assert_eq(len, 7);
	cr_assert_eq(ns_xattr_remove(f, "user.a"), 0);
	cr_assert_eq(ns_xattr_remove(f, "user.a"), -ENODATA);
}

Test(node, trusted_xattrs_are_listed_only_for_the_privileged)
{
	struct node *f = add(ns.root, "f", S_IFREG | 0644);
	char buf[32];
	size_t len;

	cr_assert(ns_xattr_kept("user.x") && ns_xattr_kept("trusted.x"));
	cr_assert(ns_xattr_kept("security.x") &&
		  ns_xattr_kept("system.posix_acl_access") &&
		  ns_xattr_kept("system.posix_acl_default"));
	cr_assert_not(ns_xattr_kept("security.capability") ||
		      ns_xattr_kept("system.x") || ns_xattr_kept("x.y"));
	cr_assert_eq(ns_xattr_set(f, "trusted.t", "1", 1, 0), 0);
	cr_assert_eq(ns_xattr_set(f, "user.u", "2", 1, 0), 0);
	cr_assert_eq(ns_xattr_list(f, false, buf, sizeof(buf), &len), 0);
	cr_assert_eq(len, 7);
	cr_assert_str_eq(buf, "user.u");
	cr_assert_eq(ns_xattr_list(f, true, buf, sizeof(buf), &len), 0);
	cr_assert_eq(len, 17);
}

/* Nodes, names and xattrs count in meta_used, and give it back. */
Test(node, metadata_is_counted_and_given_back)
{
	uint64_t base = ns.meta_used, one;
	struct node *d, *f;
	char big[1000] = { 0 };

	cr_assert_eq(base, ns_node_cost(false)); /* the root */
	d = add(ns.root, "dir", S_IFDIR | 0755);
	f = add(d, "file", S_IFREG | 0644);
	one = base + ns_node_cost(false) + ns_name_cost("dir") +
	      ns_node_cost(true) + ns_name_cost("file");
	cr_assert_eq(ns.meta_used, one);
	cr_assert_eq(ns_xattr_set(f, "user.big", big, sizeof(big), 0), 0);
	ns_meta_account(&ns, f);
	cr_assert_eq(ns.meta_used, one + ns_xattr_cost("user.big", 1000));
	cr_assert_eq(ns_xattr_set(f, "user.big", big, 10, 0), 0);
	ns_meta_account(&ns, f);
	cr_assert_eq(ns.meta_used, one + ns_xattr_cost("user.big", 10));
	cr_assert_eq(ns_move(&ns, f->links, d, "a-longer-name"), 0);
	cr_assert_eq(ns.meta_used, one + ns_xattr_cost("user.big", 10) +
					   ns_name_cost("a-longer-name") -
					   ns_name_cost("file"));
	ns_unlink(&ns, f->links);
	ns_unlink(&ns, d->links);
	cr_assert_eq(ns.meta_used, base);
}
