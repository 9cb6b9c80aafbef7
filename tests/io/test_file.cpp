// Tests for io/file (open_regular_file, read_file, check_regular_file) and for every library reader of user-given
// files built on it (safetensors, checkpoint index and shards, config.json, tokenizer files and side files, llama2.c
// files, tokenizer training inputs). A FIFO, directory, device or socket where a file is expected must give a
// sala::Error naming the path at once. Each call runs on a worker thread with a deadline: if it blocks (a FIFO opened
// for reading waits for a writer), the test fails and releases it by opening the FIFO for writing, so a regression
// fails instead of hanging the suite. The CLI entry points are in tests/apps/test_cli_files.cpp.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <string>
#include <utility>
#include <vector>

#include "sala/core/error.h"
#include "sala/io/checkpoint.h"
#include "sala/io/file.h"
#include "sala/io/safetensors.h"
#include "sala/model/config.h"
#include "sala/model/llama2c.h"
#include "sala/model/model.h"
#include "sala/text/tokenizer.h"
#include "sala/text/tokenizer_train.h"
#include "test_util.h"

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using namespace sala;
using sala::test::TempDir;

std::string make_fifo(const std::string& path) {
  EXPECT_EQ(::mkfifo(path.c_str(), 0600), 0) << path << ": " << std::strerror(errno);
  return path;
}

using sala::test::write_text;

// Runs f on a worker thread; returns the message of the sala::Error it throws. Fails the test if f returns normally,
// throws anything else, or is still running after 5 s (then every FIFO in `fifos` is opened for writing and closed
// until f finishes: that releases a reader blocked in open() and lets it see end of file).
template <class F>
std::string error_within_deadline(F f, const std::vector<std::string>& fifos) {
  auto fut = std::async(std::launch::async, [f]() -> std::pair<int, std::string> {
    try {
      f();
      return {0, ""};
    } catch (const sala::Error& e) {
      return {1, e.what()};
    } catch (const std::exception& e) {
      return {2, e.what()};
    }
  });
  if (fut.wait_for(5s) != std::future_status::ready) {
    ADD_FAILURE() << "still running after 5 s: blocked on a FIFO?";
    while (fut.wait_for(50ms) != std::future_status::ready)
      for (const auto& p : fifos) {
        const int fd = ::open(p.c_str(), O_WRONLY | O_NONBLOCK);  // succeeds only while a reader waits
        if (fd >= 0) ::close(fd);
      }
  }
  auto [kind, msg] = fut.get();
  if (kind == 0) ADD_FAILURE() << "no sala::Error thrown";
  if (kind == 2) ADD_FAILURE() << "threw something other than sala::Error: " << msg;
  return msg;
}

// The message must start with the path (the project's convention) and say what was found there.
void expect_refused(const std::string& msg, const std::string& path, const std::string& found) {
  EXPECT_EQ(msg.rfind(path + ": ", 0), 0u) << "message does not start with the path " << path << ": " << msg;
  EXPECT_NE(msg.find("not a regular file"), std::string::npos) << msg;
  EXPECT_NE(msg.find("found " + found), std::string::npos) << msg;
}

// One FIFO test: f(path) on a fresh FIFO must be refused promptly, naming it.
template <class F>
void expect_fifo_refused(const std::string& fifo, F f) {
  const std::string msg = error_within_deadline([&] { f(fifo); }, {fifo});
  expect_refused(msg, fifo, "a FIFO");
}

// A bound Unix-domain socket at `path` (closed at scope exit; the socket file stays until the folder goes).
struct Socket {
  int fd = -1;
  explicit Socket(const std::string& path) {
    fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    EXPECT_LT(path.size(), sizeof(a.sun_path)) << path;
    std::strncpy(a.sun_path, path.c_str(), sizeof(a.sun_path) - 1);
    EXPECT_EQ(::bind(fd, reinterpret_cast<const sockaddr*>(&a), sizeof(a)), 0) << std::strerror(errno);
  }
  ~Socket() {
    if (fd >= 0) ::close(fd);
  }
};

std::string tiny_model() { return std::string(SALA_SOURCE_DIR) + "/models/sala-tiny"; }

// ---- io/file itself -------------------------------------------------------------------------------------------------

TEST(FileRead, WholeFileAndLimit) {
  TempDir dir("file");
  const std::string p = dir.file("a.bin");
  const std::string content("ab\0c\xff\n", 6);
  write_text(p, content);
  EXPECT_EQ(io::read_file(p, "test file", 6), content);  // exactly at the limit
  std::string msg;
  try {
    io::read_file(p, "test file", 5);
  } catch (const Error& e) {
    msg = e.what();
  }
  EXPECT_EQ(msg, p + ": test file is 6 bytes, over the limit of 5 bytes");
  const std::string empty = dir.file("empty");
  write_text(empty, "");
  EXPECT_EQ(io::read_file(empty, "test file", 0), "");
  // A larger file (several reads) comes back whole.
  std::string big(3'000'000, 'x');
  for (size_t i = 0; i < big.size(); i += 4093) big[i] = char('a' + i % 26);
  write_text(dir.file("big"), big);
  EXPECT_EQ(io::read_file(dir.file("big"), "test file", big.size()), big);
}

TEST(FileOpen, RegularFileDescriptorIsBlockingAndCloexec) {
  TempDir dir("file");
  const std::string p = dir.file("a.txt");
  write_text(p, "hello");
  const int fd = io::open_regular_file(p, "test file");
  ASSERT_GE(fd, 0);
  EXPECT_EQ(::fcntl(fd, F_GETFL) & O_NONBLOCK, 0);
  EXPECT_NE(::fcntl(fd, F_GETFD) & FD_CLOEXEC, 0);
  char buf[8];
  EXPECT_EQ(::read(fd, buf, sizeof buf), 5);
  ::close(fd);
  // A symlink to a regular file is followed.
  fs::create_symlink(p, dir.file("link"));
  EXPECT_EQ(io::read_file(dir.file("link"), "test file", 100), "hello");
  EXPECT_NO_THROW(io::check_regular_file(dir.file("link"), "test file"));
}

TEST(FileOpen, RefusesFifoDirectoryDeviceSocket) {
  TempDir dir("file");
  const std::string fifo = make_fifo(dir.file("fifo"));
  for (int which = 0; which < 3; ++which) {
    const std::string msg = error_within_deadline(
        [&] {
          if (which == 0) ::close(io::open_regular_file(fifo, "test file"));
          if (which == 1) io::read_file(fifo, "test file", 100);
          if (which == 2) io::check_regular_file(fifo, "test file");
        },
        {fifo});
    EXPECT_EQ(msg, fifo + ": not a regular file (test file; found a FIFO)");
  }
  // A symlink to a FIFO is refused as the FIFO it points to.
  fs::create_symlink(fifo, dir.file("fifo_link"));
  expect_refused(error_within_deadline([&] { io::read_file(dir.file("fifo_link"), "x", 1); }, {fifo}),
                 dir.file("fifo_link"), "a FIFO");

  expect_refused(error_within_deadline([&] { io::read_file(dir.str(), "x", 1); }, {}), dir.str(), "a directory");
  expect_refused(error_within_deadline([&] { io::read_file("/dev/null", "x", 1); }, {}), "/dev/null",
                 "a character device");
  const std::string sock = dir.file("sock");
  Socket s(sock);
  expect_refused(error_within_deadline([&] { io::read_file(sock, "x", 1); }, {}), sock, "a socket");

  const std::string missing = dir.file("missing");
  const std::string msg = error_within_deadline([&] { io::read_file(missing, "config file", 1); }, {});
  EXPECT_EQ(msg.rfind(missing + ": cannot open config file: ", 0), 0u) << msg;
  EXPECT_NE(error_within_deadline([&] { io::read_file("", "config file", 1); }, {}).find("empty"), std::string::npos);
}

// ---- the readers built on it --------------------------------------------------------------------------------------

TEST(FifoEntryPoints, SafetensorsFileAndCheckpoint) {
  TempDir dir("fifo-ckpt");
  expect_fifo_refused(make_fifo(dir.file("x.safetensors")), [](const std::string& p) { io::SafetensorsFile::open(p); });
  expect_fifo_refused(dir.file("x.safetensors"), [](const std::string& p) { io::Checkpoint::open(p); });

  // A folder whose model.safetensors is a FIFO.
  fs::create_directories(dir.path() / "single");
  const std::string single = make_fifo(dir.file("single/model.safetensors"));
  expect_fifo_refused(single, [&](const std::string&) { io::Checkpoint::open(dir.file("single")); });

  // The index itself is a FIFO, given as a path and found in a folder.
  expect_fifo_refused(make_fifo(dir.file("x.json")), [](const std::string& p) { io::Checkpoint::open(p); });
  fs::create_directories(dir.path() / "index");
  const std::string index = make_fifo(dir.file("index/model.safetensors.index.json"));
  expect_fifo_refused(index, [&](const std::string&) { io::Checkpoint::open(dir.file("index")); });

  // A valid index naming a shard that is a FIFO.
  fs::create_directories(dir.path() / "shard");
  write_text(dir.file("shard/model.safetensors.index.json"),
             R"({"metadata": {}, "weight_map": {"w": "model-00001-of-00001.safetensors"}})");
  const std::string shard = make_fifo(dir.file("shard/model-00001-of-00001.safetensors"));
  expect_fifo_refused(shard, [&](const std::string&) { io::Checkpoint::open(dir.file("shard")); });
}

TEST(FifoEntryPoints, ConfigAndModel) {
  TempDir dir("fifo-cfg");
  expect_fifo_refused(make_fifo(dir.file("config.json")), [](const std::string& p) { load_config(p); });
  expect_fifo_refused(dir.file("config.json"), [&](const std::string&) { load_config(dir.str()); });
  expect_fifo_refused(dir.file("config.json"), [&](const std::string&) { Model::load(dir.str()); });
  // A good config next to a FIFO model.safetensors: Model::load gets as far as the checkpoint.
  fs::create_directories(dir.path() / "m");
  fs::copy_file(tiny_model() + "/config.json", dir.file("m/config.json"));
  expect_fifo_refused(make_fifo(dir.file("m/model.safetensors")),
                      [&](const std::string&) { Model::load(dir.file("m")); });
  // A folder named config.json.
  fs::create_directories(dir.path() / "d" / "config.json");
  expect_refused(error_within_deadline([&] { load_config(dir.file("d")); }, {}), dir.file("d/config.json"),
                 "a directory");
}

TEST(FifoEntryPoints, TokenizerFilesAndSideFiles) {
  TempDir dir("fifo-tok");
  // The main file, in a folder and given directly.
  for (const char* name : {"tokenizer.json", "tokenizer.model"}) {
    const fs::path sub = dir.path() / (std::string("main-") + name);
    fs::create_directories(sub);
    expect_fifo_refused(make_fifo((sub / name).string()),
                        [&](const std::string& p) { text::Tokenizer::load(sub.string()); });
    expect_fifo_refused((sub / name).string(), [](const std::string& p) { text::Tokenizer::load(p); });
  }
  // Side files next to a good tokenizer.json: a FIFO there is an error, not silently skipped.
  for (const char* side : {"tokenizer_config.json", "added_tokens.json", "chat_template.jinja", "config.json",
                           "generation_config.json"}) {
    const fs::path sub = dir.path() / (std::string("side-") + side);
    fs::create_directories(sub);
    fs::copy_file(tiny_model() + "/tokenizer.json", sub / "tokenizer.json");
    expect_fifo_refused(make_fifo((sub / side).string()),
                        [&](const std::string&) { text::Tokenizer::load(sub.string()); });
  }
  // A folder where tokenizer.json should be.
  fs::create_directories(dir.path() / "d" / "tokenizer.json");
  expect_refused(error_within_deadline([&] { text::Tokenizer::load(dir.file("d")); }, {}),
                 dir.file("d/tokenizer.json"), "a directory");
}

TEST(FifoEntryPoints, Llama2cAndTokenizerTraining) {
  TempDir dir("fifo-l2c");
  expect_fifo_refused(make_fifo(dir.file("model.bin")), [](const std::string& p) { read_llama2c(p); });
  expect_fifo_refused(make_fifo(dir.file("tok.bin")), [](const std::string& p) { Llama2cVocab::load(p); });
  expect_fifo_refused(make_fifo(dir.file("corpus.txt")), [&](const std::string& p) {
    text::TokenizerTrainOptions o;
    o.inputs = {p};
    o.out_dir = dir.file("out");
    o.vocab_size = 300;
    text::train_tokenizer(o);
  });
  expect_fifo_refused(make_fifo(dir.file("sp.model")), [&](const std::string& p) {
    text::write_tokenizer_json_from_spm(p, dir.file("out.json"));
  });
}

}  // namespace
