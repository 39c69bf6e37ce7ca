"""DVC stage entry points: one thin Typer command per stage (parse, build config, call one library function)."""
