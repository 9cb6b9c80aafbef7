#include "sala/eval/files.h"

#include <algorithm>
#include <filesystem>

#include "sala/core/error.h"
#include "sala/io/file.h"

namespace sala::eval {

namespace fs = std::filesystem;

std::vector<std::string> text_files(const std::string& path, const std::string& what) {
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (ec || !fs::exists(st)) fail("{}: {}: no such file or folder", what, path);
  if (fs::is_regular_file(st)) return {path};
  if (!fs::is_directory(st)) fail("{}: {}: not a regular file or a folder", what, path);
  std::vector<std::string> out;
  for (auto it = fs::recursive_directory_iterator(path, fs::directory_options::skip_permission_denied, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (!name.empty() && name[0] == '.') {
      if (it->is_directory()) it.disable_recursion_pending();
      continue;
    }
    if (it->is_regular_file()) out.push_back(it->path().string());
  }
  if (ec) fail("{}: {}: cannot list the folder: {}", what, path, ec.message());
  if (out.empty()) fail("{}: {}: the folder holds no files", what, path);
  std::sort(out.begin(), out.end());
  return out;
}

std::string read_text(const std::string& path, const std::string& what) {
  return io::read_file(path, what, uint64_t(1) << 30);
}

}  // namespace sala::eval
