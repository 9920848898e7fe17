"""What the benchmark scripts record about the machine they ran on (shared by bench/*/bench.py)."""

import platform


def loadavg():
    """The 1, 5 and 15 minute load averages, or None where /proc is missing."""
    try:
        return [float(x) for x in open("/proc/loadavg").read().split()[:3]]
    except OSError:
        return None


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def meminfo_mib(key):
    """A /proc/meminfo field (e.g. "MemTotal:") in MiB, or None."""
    try:
        for line in open("/proc/meminfo"):
            if line.startswith(key):
                return round(int(line.split()[1]) / 1024)
    except OSError:
        pass
    return None
