// Options shared by the commands that make prompts (`selma prompts`, `selma world
// render`): --skill --n --seed --threshold --max-rejects --generator-cmd --timeout.
#ifndef SELMA_EXPERIMENTS_PROMPT_OPTS_H
#define SELMA_EXPERIMENTS_PROMPT_OPTS_H

#include <stdint.h>

#include "data/prompt_gen.h"

// Returns 1 if argv[*i] was one of the options (its value consumed), 0 if not, -1 on
// a bad value (message printed as "selma <cmd>: ..."). skill: -1 for "all".
int prompt_option(const char *cmd, int argc, char **argv, int *i, int *skill, long *n,
                  uint64_t *seed, prompt_gen_opts *o);
// "<cmd>: <skill>: kept K of C candidates; rejected ..." and dropped examples.
void prompt_stats_print(const char *cmd, int skill, const prompt_gen_stats *st, int kept,
                        const prompt_gen_opts *o);

#endif
