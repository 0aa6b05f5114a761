"""Text-prompted video tracking with SAM 2's video model, in flat memory.

Example::

    from grounded_sam.video import VideoTracker, open_frames, open_track_writers

    frames = open_frames("street.mp4")
    tracker = VideoTracker(model, processor, detector, detect_every=30)
    writers = open_track_writers(
        "out", ["mot", "video"], name="street", fps=frames.fps, size=frames.size, phrases=["person", "car"]
    )
    with writers:
        for index, tracks in tracker.track(frames, "person. car"):
            writers.write(index, tracks)  # tracks.result, tracks.ids, tracks.image
"""

from grounded_sam.video.frames import VideoFrames, open_frames
from grounded_sam.video.tracker import FrameTracks, VideoTracker
from grounded_sam.video.writers import TRACK_FORMATS, TrackWriters, open_track_writers, write_video

__all__ = [
    "TRACK_FORMATS",
    "FrameTracks",
    "TrackWriters",
    "VideoFrames",
    "VideoTracker",
    "open_frames",
    "open_track_writers",
    "write_video",
]
