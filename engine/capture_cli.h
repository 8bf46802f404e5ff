// `vigil capture ...`: manual captures through a running agent's HTTP API
// (docs/captures.md): start, list, show, get (download the pcapng), delete.
#pragma once

namespace vigil {

// argv[1] is "capture". Returns the process exit code: 0 done, 1 the agent refused or failed,
// 2 bad usage.
int capture_command(int argc, char** argv);

}  // namespace vigil
