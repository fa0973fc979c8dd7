"""The main job: the whole FasterSeg work flow on the embedded demo data (see tools/pipeline.py).

    python run_demo.py                    # every stage, reusing the finished ones
    python run_demo.py --redo teacher     # train the teacher (and everything after it) again
    python run_demo.py --data camvid --data-root ../shared/camvid    # the same on CamVid (about 2 hours, 2 cores)
    python run_demo.py --root runs/demo_f6 Fch=6    # key=value overrides: here a twice as wide supernet, every stage

A stage stopped part-way (a killed session) continues from its last completed epoch on the next invocation.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from tools.pipeline import run_as_script  # noqa: E402

if __name__ == "__main__":
    run_as_script()
