"""Views of the studio dashboard (thin: parse a form, call a service or selector, render)."""
