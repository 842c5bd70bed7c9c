from smoothdistill_lib.cli import main

raise SystemExit(main())
