"""Every command and snippet of README.md, run as written, in one temporary folder holding the inputs they
name (scenes of coloured shapes from ``grounded_sam.data.make_scene``: photos/, images/, photo.jpg,
scene.png, clip.mp4, onto.yaml from the README's own YAML block), on the embedded demo model.

- The text of each README line is what runs: ``grounded-sam`` lines go through the CLI in this process
  (``shlex.split`` of the line, so the pipeline is built once), the set-up line's last step and the
  server through the installed ``grounded-sam`` command in a subprocess, other shell lines through bash.
- Lines that need weights that cannot exist here (``--sam sam_vit_b``, ``--sam2 sam2.1_hiera_tiny``,
  SAM 3, Grounding DINO) must stop with exit status 2 / ``WeightsNotFoundError`` saying which file to put
  in which folder (an empty ``$GROUNDED_SAM_HOME``, the Hub offline).
- ``serve``, ``app`` and the Review page listen on a free port of 127.0.0.1 instead of 8000 / 8501 (the
  one change made to their lines: ``--port`` and ``--host`` appended, ``8000`` replaced in the curl line
  and the httpx snippet), are polled until healthy and stopped.
- Snippets that leave names to the reader (``detector``, ``padded_image``, ...) get them from the test;
  the prose's ``grounded-sam ...`` spans are parsed (real commands and options), not run.
- Not run: the set-up line's venv and pip steps and ``bash .ci/run`` (the CI runs exactly those, and they
  reinstall the environment this suite runs in), ``grounded-sam eval`` outside ``-m slow`` (100 scenes
  take minutes) and ``train-demo`` (prose only: an hour of training).
"""
