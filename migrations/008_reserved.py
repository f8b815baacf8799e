"""008: reserved for a migration written on another branch; does nothing here.

Keeps the chain numbered without gaps on this branch; the real 008 replaces it.
"""

if __name__ == "__main__":  # run as a script: make the project importable
    import pathlib
    import sys

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from migrations.kit import Migration, main

MIGRATION = Migration(version=8, name="reserved")

if __name__ == "__main__":
    raise SystemExit(main(MIGRATION))
