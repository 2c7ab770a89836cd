"""Reports: plots and HTML pages rebuilt from run files; never imports torch."""
