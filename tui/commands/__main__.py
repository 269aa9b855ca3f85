"""``python -m tui.commands``: the ``codellmtuner`` command without its installed script (the
app's own run processes and ``serve``'s browser tabs start it so, with this interpreter)."""

import sys

from tui.commands import main

sys.exit(main())
