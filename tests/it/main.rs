mod shell_corpus;
