#include "sala/core/edit_distance.h"

#include <gtest/gtest.h>

TEST(EditDistance, ClosedForms) {
  EXPECT_EQ(sala::edit_distance("", ""), 0u);
  EXPECT_EQ(sala::edit_distance("abc", ""), 3u);
  EXPECT_EQ(sala::edit_distance("", "abcd"), 4u);
  EXPECT_EQ(sala::edit_distance("generat", "generate"), 1u);  // an insertion
  EXPECT_EQ(sala::edit_distance("passkye", "passkey"), 2u);   // a swap is two edits
  EXPECT_EQ(sala::edit_distance("kitten", "sitting"), 3u);
  EXPECT_EQ(sala::edit_distance("flaw", "lawn"), sala::edit_distance("lawn", "flaw"));
}
