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
