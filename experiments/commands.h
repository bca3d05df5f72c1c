// Every `selma <command>`: int cmd_<name>(int argc, char **argv), argv[0] being the
// command's name. Returns the process exit code. main.c holds the table.
#ifndef SELMA_EXPERIMENTS_COMMANDS_H
#define SELMA_EXPERIMENTS_COMMANDS_H

int cmd_version(int argc, char **argv);

#endif
