// RULER's scoring (scripts/eval/synthetic/constants.py): the prediction is cleaned (control characters become line
// breaks, surrounding space trimmed), then each reference is looked for as a case-insensitive substring.
//  - string_match_all: the fraction of the references found (NIAH, VT, CWE, FWE, passkey);
//  - string_match_part: 1 when any reference is found (QA).
// Scores are in percent (0..100), per sample; a cell's score is the mean of its samples.
#pragma once
#include <span>
#include <string>
#include <string_view>

#include "sala/eval/tasks.h"

namespace sala::eval {

std::string postprocess_prediction(std::string_view pred);
double string_match_all(std::string_view pred, std::span<const std::string> refs);
double string_match_part(std::string_view pred, std::span<const std::string> refs);
double score(Metric m, std::string_view pred, std::span<const std::string> refs);

}  // namespace sala::eval
