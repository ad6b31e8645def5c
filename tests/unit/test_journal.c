/*
 * Unit tests of the journal: order, and finding a mount path in SOURCE.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/journal.h"

static struct journal j;

static void setup(void)
{
	jrn_init(&j);
}

static void teardown(void)
{
	jrn_destroy(&j);
}

TestSuite(journal, .init = setup, .fini = teardown);

static void expect_source(const char *mount, const char *source)
{
	char *p = jrn_source_path(&j, mount);

	cr_assert_str_eq(p, source);
	free(p);
}

Test(journal, without_changes_a_path_is_itself)
{
	expect_source("a/b", "a/b");
}

Test(journal, a_renamed_file_is_found_at_its_old_name)
{
	jrn_add(&j, J_RENAME, "a", "c", 0, 0, 0);
	expect_source("c", "a");
	expect_source("c2", "c2");
}

Test(journal, files_inside_a_renamed_directory_follow_it)
{
	jrn_add(&j, J_RENAME, "d", "e/f", 0, 0, 0);
	expect_source("e/f/x/y", "d/x/y");
	expect_source("e/fx", "e/fx");
}

Test(journal, a_chain_of_renames_is_undone_newest_first)
{
	/* A -> C, then B -> A: the file now at A was B, at C was A. */
	jrn_add(&j, J_RENAME, "A", "C", 0, 0, 0);
	jrn_add(&j, J_RENAME, "B", "A", 0, 0, 0);
	expect_source("A", "B");
	expect_source("C", "A");
}

Test(journal, an_exchange_swaps_both_ways)
{
	jrn_add(&j, J_RENAME, "x", "y", 0, 0, 2 /* RENAME_EXCHANGE */);
	expect_source("x", "y");
	expect_source("y", "x");
}

Test(journal, popping_replays_in_order)
{
	jrn_add(&j, J_MKDIR, "d", NULL, 0755, 0, 0);
	jrn_add(&j, J_UNLINK, "f", NULL, 0, 0, 0);
	cr_assert_eq(j.count, 2);
	cr_assert_eq(j.head->kind, J_MKDIR);
	jrn_pop(&j);
	cr_assert_eq(j.head->kind, J_UNLINK);
	cr_assert_str_eq(j.head->p1, "f");
	jrn_pop(&j);
	cr_assert_null(j.head);
	cr_assert_eq(j.count, 0);
}

/* The i-th operation (0: oldest). */
static struct jop *nth(int i)
{
	struct jop *op = j.head;

	while (i-- > 0)
		op = op->next;
	return op;
}

Test(journal, a_redirect_rewrites_later_operations_on_the_object)
{
	char *from, *to;

	jrn_add(&j, J_RENAME, "a", "x", 0, 0, 0);	/* put aside as x.c */
	jrn_add(&j, J_LINK, "x", "y", 0, 0, 0);
	jrn_add(&j, J_SYMLINK, "s", "x", 0, 0, 0);	/* target: not a path */
	jrn_add(&j, J_RENAME, "xy", "z", 0, 0, 0);	/* only a prefix */
	cr_assert_eq(jrn_redirect(&j, nth(0), "x", "x.c", &from, &to), 0);
	cr_assert_str_eq(nth(1)->p1, "x.c");
	cr_assert_str_eq(nth(1)->p2, "y");
	cr_assert_str_eq(nth(2)->p2, "x");
	cr_assert_str_eq(nth(3)->p1, "xy");
	/* still at x in the mount: the mount's name moves to x.c */
	cr_assert_str_eq(from, "x");
	cr_assert_str_eq(to, "x.c");
	free(from);
	free(to);
}

Test(journal, a_redirect_follows_renamed_parents_and_ends_with_a_move)
{
	char *from, *to;

	jrn_add(&j, J_MKDIR, "d/x", NULL, 040755, 0, 0); /* put aside */
	jrn_add(&j, J_MKNOD, "d/x/f", NULL, 010644, 0, 0);
	jrn_add(&j, J_RENAME, "d", "e", 0, 0, 0);
	jrn_add(&j, J_RENAME, "e/x/f", "e/g", 0, 0, 0);
	jrn_add(&j, J_RENAME, "e/x", "h", 0, 0, 0);	/* moved away */
	jrn_add(&j, J_MKDIR, "e/x", NULL, 040755, 0, 0); /* a new one */
	cr_assert_eq(jrn_redirect(&j, nth(0), "d/x", "d/x.c", &from, &to), 0);
	cr_assert_str_eq(nth(1)->p1, "d/x.c/f");
	cr_assert_str_eq(nth(2)->p1, "d");
	cr_assert_str_eq(nth(3)->p1, "e/x.c/f");
	cr_assert_str_eq(nth(3)->p2, "e/g");
	cr_assert_str_eq(nth(4)->p1, "e/x.c");
	cr_assert_str_eq(nth(4)->p2, "h");
	cr_assert_str_eq(nth(5)->p1, "e/x"); /* not the mount's object */
	cr_assert_null(from);
	cr_assert_null(to);
}

Test(journal, a_redirect_through_an_exchange_keeps_the_name_aside)
{
	char *from, *to;

	jrn_add(&j, J_LINK, "a", "x", 0, 0, 0);
	jrn_add(&j, J_RENAME, "x", "b", 0, 0, 2 /* RENAME_EXCHANGE */);
	jrn_add(&j, J_RENAME, "c", "x", 0, 0, 0);	/* over it */
	cr_assert_eq(jrn_redirect(&j, nth(0), "x", "x.c", &from, &to), 0);
	cr_assert_str_eq(nth(1)->p1, "x.c");
	cr_assert_str_eq(nth(2)->p2, "x.c");
	cr_assert_str_eq(from, "x");
	cr_assert_str_eq(to, "x.c");
	free(from);
	free(to);
}
