"""The main job: the whole FasterSeg work flow on the embedded demo data (see tools/pipeline.py).

    python run_demo.py                    # every stage, reusing the finished ones
    python run_demo.py --redo teacher     # train the teacher (and everything after it) again
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from tools.pipeline import main  # noqa: E402

if __name__ == "__main__":
    main()
