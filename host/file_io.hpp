/// @file file_io.hpp
/// @brief File helpers: SHA-256 of bytes, and output directories that appear all at once or not at all.
#pragma once

#include <map>
#include <string>
#include <string_view>

namespace capledger::detail {

/// @brief Lower-case hex SHA-256 of @p bytes.
[[nodiscard]] std::string sha256_hex(std::string_view bytes);

/// @brief Writes every (file name, content) pair into directory @p out_dir atomically: the files are
/// written and fsynced in a sibling temporary directory, which is then renamed into place. An
/// existing @p out_dir is replaced only when it is empty or holds a previous capledger output
/// (a `summary.json`). @throw config_error when the directory cannot be written
void write_directory_atomically(const std::string& out_dir,
                                const std::map<std::string, std::string>& files);

/// @brief Writes one file atomically (temporary file, fsync, rename). @throw config_error
void write_file_atomically(const std::string& path, std::string_view content);

}  // namespace capledger::detail
