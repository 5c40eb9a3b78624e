"""``python -m cca_lib.book``: execute the book's chapters (see :mod:`cca_lib.book.execute`)."""

from cca_lib.book.execute import main

if __name__ == "__main__":
    main()
