"""Shared by the reliability tests: a pickle payload that shows whether it ran, and a process id that is gone."""
import os
import subprocess
import sys


class Payload:
    """Unpickling this runs ``os.mkdir(target)``: a loader ran code from the file exactly when the folder exists."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.mkdir, (self.target,))


def dead_pid():
    """The id of a process that has exited (what a lock left by a killed run names)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid
