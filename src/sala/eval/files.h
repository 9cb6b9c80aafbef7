// The text inputs of an eval (a haystack corpus, perplexity files): a path that names a file or a folder. A folder
// stands for every regular file under it (recursively, hidden entries skipped), in byte order of their paths, so a
// run does not depend on the order the filesystem lists them in.
#pragma once
#include <string>
#include <vector>

namespace sala::eval {

// The files `path` stands for. Throws sala::Error naming `what` (the option, e.g. "--ppl") and the path when it does
// not exist, is neither a file nor a folder, or is a folder without files.
std::vector<std::string> text_files(const std::string& path, const std::string& what);

// A file's text (regular files only, at most 1 GiB), for `what`.
std::string read_text(const std::string& path, const std::string& what);

}  // namespace sala::eval
