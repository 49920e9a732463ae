"""The DAP data engine (paper, three stages), as restartable commands with outputs on disk.

    python -m training.engine train        --config training/configs/engine_labeler.yaml   # (1) labeler
    python -m training.engine pseudo-label --checkpoint L.pth --images DIR --out PL          # (2)
    python -m training.engine select       --labeler L.pth --labelled SPEC --pseudo PL/manifest.jsonl --out SEL  # (3)
    python -m training.engine train-next   --config training/configs/engine_student.yaml \
                                           --selected SEL/selected.txt  # (4)

See training/README.md ("Data engine").
"""
