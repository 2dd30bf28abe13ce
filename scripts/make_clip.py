#!/usr/bin/env python3
"""Write a test clip of real photos as a video file, for `camclassd bench --source FILE`.

    .venv/bin/python scripts/make_clip.py OUT.mp4 [--clip change] [--seconds 10] [--fps 30]

640x480 'mp4v' (the codec the opencv wheel can write); the clips are those of
camclassd.bench.clips (deterministic, seeded; needs scikit-image for the photos).
"""

from __future__ import annotations

import sys

from camclassd.bench.clips import main

if __name__ == "__main__":
    sys.exit(main())
