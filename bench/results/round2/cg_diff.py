#!/usr/bin/env python3
"""Instructions per unit of work, by stage and by function, from two
callgrind runs of the same server that differ only in the work done
(e.g. 200 and 1,000 ingress frames per client at C = 1,000): the
difference of the two runs divided by the difference in units, so that
start-up, connects and shutdown cancel out.

usage: cg_diff.py ingress|broadcast SMALL.out BIG.out UNITS [--top N]

Costs are read per (source file of the line, function) from
`callgrind_annotate --inclusive=no --auto=no` (the binary is built with
line tables, so code inlined from another file is attributed to that
file), then summed into stages by the first rule of RULES that matches.
System calls: callgrind counts the instructions of the libc wrapper, not
the kernel's work; the calls themselves are counted (`calls` below).
"""
import re
import subprocess
import sys
from collections import defaultdict

# (stage, regex over the source file, regex over the function); first match wins.
# Broadcast only, ahead of RULES: the application's side.
BROADCAST_RULES = [
    ("the application's broadcast (building messages, the outgoing channel)", r"bench/src/servers/ours|futures-channel|futures-util", r""),
    ("the application's broadcast (building messages, the outgoing channel)", r"", r"SpecFromIter|futures_channel|bench::servers::ours::broadcast|AsyncCallOnDrop|Next<St>|poll_next_unpin"),
]

RULES = [
    ("read syscall (libc wrapper; kernel not counted)", r"", r"^(__libc_recv|recv|__libc_read|read|__GI___libc_read)$"),
    ("write syscall (libc wrapper; kernel not counted)", r"", r"^(__libc_send|send|sendto|__libc_write|write|writev|__writev)$"),
    ("reactor: epoll and other syscalls (kernel not counted)", r"", r"epoll|^syscall$|futex|clock_gettime|eventfd|timerfd|__GI___poll"),
    ("zero-fill of the read buffer (memset)", r"", r"memset"),
    ("allocation (malloc/free)", r"malloc\.c|arena\.c", r""),
    ("floor: parse in place, count", r"mio_floor\.rs|bench/src/proto\.rs", r""),
    ("floor: event loop (mio)", r"/mio-\d", r""),
    ("decode (FramedRead, codec, BytesMut split)", r"framed/read\.rs|codec/length_delimited\.rs|bytes_mut\.rs|buf/buf_impl\.rs", r"decode|FramedRead|split_to|advance_unchecked|BytesMut::resize"),
    ("decode (FramedRead, codec, BytesMut split)", r"", r"Decoder>::decode|FramedRead<R,D> as futures_core|BytesMut::"),
    ("encode (codec: header and payload into the write buffer)", r"", r"Encoder>::encode"),
    ("hand to the channel (sender side)", r"batch\.rs|futures-channel", r"read_channels|BatchSender|hand_over|Sender|start_send|poll_ready|poll_unparked"),
    ("hand to the channel (sender side)", r"", r"BatchSender|spec_extend|Sender<T>|poll_unparked"),
    ("consumer side (receiver, consume loop, dropping the frame)", r"", r"Next<St>|BatchReceiver|Receiver<T>|pop_spin|next_message|poll_next_unpin|shared_v_drop|release_shared|AsyncCallOnDrop|ours::consume"),
    ("applying the message to each recipient (lookup, backlog push, value clone)", r"", r"Outgoing<Out,V>::apply|static_clone|rooms::"),
    ("writer: backlog to the write buffer (pump)", r"", r"Writer<W,V>::pump|WriteQueue|FramedWrite|poll_write_until"),
    ("Run's read loop (ready queue, registry, turns)", r"", r"read_channels|Reader|begin_poll|send_announcements"),
    ("wakeups and the executor", r"", r"async_executor|async_task|async_io|polling|futures_lite|concurrent_queue|event_listener|parking|KeyWaker|WakeHub|AtomicWaker|Waker|wake"),
    ("Run (other)", r"", r"stream_multiplexer"),
    ("memcpy/memmove (other)", r"", r"mem(cpy|move)"),
]


def annotate(path, *extra):
    return subprocess.run(
        ["callgrind_annotate", "--inclusive=no", "--auto=no", "--threshold=100", *extra, path],
        capture_output=True, text=True, check=True).stdout


def functions(path):
    table = {}
    for line in annotate(path).splitlines():
        m = re.match(r"^\s*([\d,]+)\s+\([^)]*\)\s+(\S.*)$", line)
        if not m or "PROGRAM TOTALS" in line:
            continue
        name = re.sub(r"\s*\[[^\]]*\]$", "", m.group(2).strip())
        table[name] = table.get(name, 0) + int(m.group(1).replace(",", ""))
    return table


def calls(path, pattern):
    """Calls made to functions matching `pattern` (from the caller tree)."""
    n = 0
    # The caller tree gives "(Nx)" on each caller line, grouped under the
    # callee's "*" line: sum them per callee.
    block = []
    for line in annotate(path, "--tree=caller").splitlines():
        if not line.strip():
            block = []
            continue
        if re.search(r"\*\s+\S", line):
            callee = re.sub(r"\s*\[[^\]]*\]$", "", line.split("*", 1)[1].strip()).split(":")[-1]
            if re.search(pattern, callee):
                for b in block:
                    m = re.search(r"\(([\d,]+)x\)", b)
                    if m:
                        n += int(m.group(1).replace(",", ""))
            block = []
        elif "<" in line:
            block.append(line)
    return n


def split(name):
    # "file:function", where the file may itself hold no colon but the
    # function may (paths to ::).
    i = name.find(":", name.rfind("/") if "/" in name.split(":")[0] else 0)
    return name[:i], name[i + 1:]


def stage_of(name, mode="ingress"):
    file, func = split(name)
    rules = (BROADCAST_RULES if mode == "broadcast" else []) + RULES
    for stage, file_re, func_re in rules:
        if re.search(file_re, file) and re.search(func_re, func):
            return stage
    return "other"


def short(name):
    return (name.replace("/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/", "~/")
            .replace("/rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/", "std/")
            .replace("/work/wt/bench15/", ""))


def main():
    mode, small, big, units = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    top = int(sys.argv[sys.argv.index("--top") + 1]) if "--top" in sys.argv else 25
    a, b = functions(small), functions(big)
    diff = {k: b.get(k, 0) - a.get(k, 0) for k in set(a) | set(b)}
    print(f"total: {sum(diff.values()) / units:.1f} instructions per unit")
    # Socket calls only: `read`/`write` are the control protocol's stdin
    # and stdout. (The reactor's epoll calls go through raw system calls,
    # no libc function, so they are not counted here.)
    for what, pattern in [("recv (socket reads)", r"^(__libc_recv|recv|recvfrom)$"),
                          ("send (socket writes)", r"^(__libc_send|send|sendto|writev|__writev)$")]:
        n = calls(big, pattern) - calls(small, pattern)
        print(f"{what} calls per unit: {n / units:.5f}")
    stages = defaultdict(float)
    for name, d in diff.items():
        stages[stage_of(name, mode)] += d / units
    print("\nby stage:")
    for stage, v in sorted(stages.items(), key=lambda kv: -kv[1]):
        print(f"  {v:8.1f}  {stage}")
    print(f"\ntop {top} (file of the line : function), exclusive:")
    for name, d in sorted(diff.items(), key=lambda kv: -kv[1])[:top]:
        print(f"  {d / units:8.1f}  [{stage_of(name, mode)[:28]}]  {short(name)[:150]}")


if __name__ == "__main__":
    main()
