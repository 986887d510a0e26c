mod shell_corpus;
mod shell_differential;
