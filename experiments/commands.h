// Every `selma <command>`: int cmd_<name>(int argc, char **argv), argv[0] being the
// command's name. Returns the process exit code. main.c holds the table.
#ifndef SELMA_EXPERIMENTS_COMMANDS_H
#define SELMA_EXPERIMENTS_COMMANDS_H

int cmd_version(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_prompts(int argc, char **argv);
int cmd_world(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_pretrain(int argc, char **argv);
int cmd_sample(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_merge(int argc, char **argv);
int cmd_fold(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_sd_check(int argc, char **argv);

#endif
