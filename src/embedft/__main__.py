"""``python -m embedft COMMAND ...``: the ``embedft`` command (:mod:`embedft.cli.app`)."""

from embedft.cli.app import run

if __name__ == "__main__":
    run()
