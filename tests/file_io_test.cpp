/// @file file_io_test.cpp
/// @brief Memory helpers of host/file_io.hpp.
#include "file_io.hpp"

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include <sys/mman.h>
#include <unistd.h>

namespace {

using capledger::detail::populate_pages;

/// Pages of [data, data + pages x page size) that are in memory.
std::size_t resident_pages(const char* data, std::size_t pages, std::size_t page)
{
  std::vector<unsigned char> in_memory(pages);
  if (::mincore(const_cast<char*>(data), pages * page, in_memory.data()) != 0) { return SIZE_MAX; }
  std::size_t resident = 0;
  for (const unsigned char flag : in_memory) { resident += flag & 1U; }
  return resident;
}

// A fresh anonymous mapping has no page in memory until one is written. populate_pages must back
// every page that lies wholly inside the range it is given (48 MiB from 100 bytes into a page:
// several threads take slices whose ends are not page aligned) and none before it.
TEST(PopulatePages, BacksEveryPageOfTheRange)
{
  const auto page           = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  const std::size_t pages   = (std::size_t{48} << 20) / page + 3;
  void* mapping = ::mmap(nullptr, pages * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(mapping, MAP_FAILED);
  auto* base = static_cast<char*>(mapping);
  ::madvise(base, pages * page, MADV_NOHUGEPAGE);  // 4 KiB pages: one page's state says nothing of its neighbours
  ASSERT_EQ(resident_pages(base, pages, page), 0U);

  char* begin             = base + page + 100;
  const std::size_t bytes = (pages - 3) * page;  // ends 100 bytes into page pages - 2
  populate_pages(begin, bytes);

  EXPECT_EQ(resident_pages(base, 1, page), 0U) << "the page before the range";
  EXPECT_EQ(resident_pages(base + 2 * page, pages - 4, page), pages - 4) << "pages wholly inside the range";
  EXPECT_EQ(resident_pages(base + (pages - 1) * page, 1, page), 0U) << "the page after the range";
  ::munmap(mapping, pages * page);
}

TEST(PopulatePages, NothingToDoForAnEmptyRange)
{
  populate_pages(nullptr, 0);
  char byte = 7;
  populate_pages(&byte, 0);
  EXPECT_EQ(byte, 7);
}

}  // namespace
