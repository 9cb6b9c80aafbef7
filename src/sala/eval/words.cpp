#include "sala/eval/words.h"

#include <array>
#include <set>

namespace sala::eval {

namespace {

// Plain, common words (lowercase, ASCII): keys read naturally and tokenize like ordinary text.
constexpr std::string_view kAdjectives[] = {
    "able",    "ancient", "angry",   "bold",    "brave",   "bright",  "broad",   "busy",    "calm",    "careful",
    "cheap",   "clean",   "clever",  "cold",    "cool",    "crazy",   "curious", "damp",    "dark",    "deep",
    "eager",   "early",   "easy",    "empty",   "equal",   "fair",    "famous",  "fancy",   "fast",    "fierce",
    "flat",    "fresh",   "friendly", "funny",  "gentle",  "giant",   "glad",    "golden",  "grand",   "great",
    "green",   "happy",   "heavy",   "honest",  "huge",    "humble",  "hungry",  "icy",     "jolly",   "kind",
    "large",   "late",    "lazy",    "light",   "little",  "lively",  "lonely",  "loud",    "lucky",   "mild",
    "modern",  "narrow",  "neat",    "nervous", "noble",   "odd",     "old",     "orange",  "pale",    "patient",
    "plain",   "polite",  "proud",   "purple",  "quick",   "quiet",   "rapid",   "rare",    "red",     "rich",
    "rough",   "round",   "rusty",   "sad",     "safe",    "sharp",   "shiny",   "short",   "silent",  "silver",
    "simple",  "sleepy",  "slow",    "small",   "smooth",  "soft",    "solid",   "sour",    "spicy",   "steady",
    "strange", "strong",  "sunny",   "sweet",   "swift",   "tall",    "tame",    "tender",  "thick",   "thin",
    "tidy",    "tiny",    "tough",   "vast",    "warm",    "wet",     "wide",    "wild",    "wise",    "young"};

constexpr std::string_view kNouns[] = {
    "anchor",  "apple",   "arrow",   "autumn",  "badge",   "basket",  "beach",   "bell",    "bicycle", "bird",
    "blanket", "boat",    "bottle",  "bridge",  "brush",   "bucket",  "button",  "cabin",   "camera",  "candle",
    "canyon",  "carpet",  "castle",  "cherry",  "circle",  "cliff",   "cloud",   "coast",   "coin",    "comet",
    "compass", "copper",  "cottage", "crown",   "crystal", "desert",  "diamond", "dragon",  "drum",    "eagle",
    "engine",  "feather", "fence",   "field",   "flame",   "flower",  "forest",  "fountain", "garden", "glacier",
    "guitar",  "hammer",  "harbor",  "helmet",  "hill",    "honey",   "island",  "jacket",  "jungle",  "kettle",
    "ladder",  "lake",    "lantern", "lemon",   "library", "lizard",  "magnet",  "maple",   "marble",  "meadow",
    "mirror",  "moon",    "mountain", "needle", "ocean",   "orchard", "otter",   "palace",  "panda",   "pebble",
    "pencil",  "pepper",  "piano",   "pillow",  "planet",  "pond",    "puzzle",  "rabbit",  "rainbow", "river",
    "rocket",  "saddle",  "shadow",  "shell",   "silk",    "spoon",   "square",  "statue",  "stone",   "storm",
    "sugar",   "summer",  "table",   "temple",  "thunder", "tiger",   "tower",   "train",   "tunnel",  "valley",
    "violin",  "wagon",   "whale",   "window",  "winter",  "wizard",  "wolf",    "zebra"};

constexpr std::string_view kVerbs[] = {
    "accept",  "admire",  "allow",   "answer",  "arrive",  "bake",    "balance", "borrow",  "bounce",  "breathe",
    "build",   "carry",   "change",  "chase",   "cheer",   "climb",   "collect", "count",   "cover",   "dance",
    "decide",  "deliver", "dream",   "drift",   "enjoy",   "escape",  "explain", "explore", "fetch",   "finish",
    "float",   "follow",  "gather",  "glow",    "grow",    "guard",   "guess",   "hover",   "hunt",    "imagine",
    "invent",  "jump",    "juggle",  "kick",    "knit",    "laugh",   "learn",   "listen",  "march",   "measure",
    "mend",    "move",    "notice",  "obey",    "offer",   "open",    "paint",   "pause",   "plant",   "polish",
    "pretend", "promise", "pull",    "push",    "question", "reach",  "relax",   "remember", "repeat", "rescue",
    "return",  "rush",    "sail",    "scatter", "search",  "shiver",  "sing",    "skip",    "smile",   "sneeze",
    "spark",   "spin",    "splash",  "squeeze", "stare",   "stir",    "study",   "surprise", "swim",   "taste",
    "thank",   "travel",  "tumble",  "twist",   "visit",   "wander",  "warn",    "wave",    "whisper", "wonder"};

constexpr std::string_view kOnsets[] = {"b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z",
                                        "br", "dr", "gr", "pl", "st", "tr"};
constexpr std::string_view kVowels[] = {"a", "e", "i", "o", "u"};

}  // namespace

std::span<const std::string_view> adjectives() { return kAdjectives; }
std::span<const std::string_view> nouns() { return kNouns; }
std::span<const std::string_view> verbs() { return kVerbs; }

std::string random_key(Rng& r) {
  return std::string(kAdjectives[r.below(std::size(kAdjectives))]) + "-" +
         std::string(kNouns[r.below(std::size(kNouns))]);
}

std::string random_number(Rng& r, int digits) {
  uint64_t lo = 1;
  for (int i = 1; i < digits; ++i) lo *= 10;
  return std::to_string(lo + r.below(lo * 9));
}

std::string random_uuid(Rng& r) {
  uint64_t hi = r.next(), lo = r.next();
  hi = (hi & ~0xf000ull) | 0x4000ull;                   // version 4
  lo = (lo & ~(3ull << 62)) | (2ull << 62);             // variant 10xx
  static constexpr char hex[] = "0123456789abcdef";
  std::string s;
  for (int i = 0; i < 32; ++i) {
    if (i == 8 || i == 12 || i == 16 || i == 20) s += '-';
    const uint64_t w = i < 16 ? hi : lo;
    s += hex[(w >> (4 * (15 - i % 16))) & 15];
  }
  return s;
}

std::string random_letters(Rng& r, int n, bool upper) {
  std::string s;
  for (int i = 0; i < n; ++i) s += char((upper ? 'A' : 'a') + r.below(26));
  return s;
}

std::vector<std::string> distinct_words(Rng& r, int64_t n) {
  std::vector<std::string> real;
  std::set<std::string> seen;
  for (auto list : {adjectives(), nouns(), verbs()})
    for (std::string_view w : list)
      if (seen.insert(std::string(w)).second) real.emplace_back(w);
  shuffle(real, r);
  std::vector<std::string> out;
  for (size_t i = 0; i < real.size() && int64_t(out.size()) < n; ++i) out.push_back(real[i]);
  // Syllable words of 3 syllables (20*5 = 100 syllables: a million words), drawn until n distinct ones exist.
  while (int64_t(out.size()) < n) {
    std::string w;
    for (int k = 0; k < 3; ++k)
      w += std::string(kOnsets[r.below(std::size(kOnsets))]) + std::string(kVowels[r.below(std::size(kVowels))]);
    if (seen.insert(w).second) out.push_back(w);
  }
  return out;
}

}  // namespace sala::eval
