from grukit.cli.main import main

raise SystemExit(main())
