"""The clinic's and support's daily tool in the admin: schedule, a booking's whole story, finder.

Server-rendered pages under /admin/backoffice/ (templates in `templates/admin/backoffice/`).
Reads go through `selectors`, changes through the same services as the API.
"""
