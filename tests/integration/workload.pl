# A deterministic Perl workload for the real_perl test: hashes of arrays, regexes with captures
# and substitutions, sorting with custom comparators, string building, sprintf, closures and
# objects, and a large transient hash that is built and torn down repeatedly.
use strict;
use warnings;

package Counter;
sub new { my ($class, %args) = @_; return bless { name => $args{name}, counts => {} }, $class; }
sub add { my ($self, $key, $n) = @_; $self->{counts}{$key} += $n // 1; return $self; }
sub top {
  my ($self, $k) = @_;
  my $c = $self->{counts};
  return (sort { $c->{$b} <=> $c->{$a} || $a cmp $b } keys %$c)[0 .. $k - 1];
}

package main;

my @words = qw(alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau);
my %index;
my $text = '';
for my $i (1 .. 60000) {
  my $word = $words[($i * 7) % @words] . ($i % 13);
  push @{ $index{ substr($word, 0, 2) } }, $i;
  $text .= "$word=" . ($i * 31 % 1000) . ($i % 10 ? ' ' : "\n");
}
printf "%d prefixes, %d bytes of text\n", scalar(keys %index), length $text;
for my $prefix (sort keys %index) {
  my $list = $index{$prefix};
  my $sum = 0;
  $sum += $_ for @$list;
  printf "  %-3s %6d entries, sum %d, last %d\n", $prefix, scalar @$list, $sum, $list->[-1];
}

my $counter = Counter->new(name => 'pairs');
my %value_by_word;
while ($text =~ /(\w+?)(\d+)=(\d+)/g) {
  $counter->add($1, $3 % 7);
  $value_by_word{"$1$2"} += $3;
}
print "top words: ", join(', ', $counter->top(5)), "\n";
my @heavy = (sort { $value_by_word{$b} <=> $value_by_word{$a} || $a cmp $b } keys %value_by_word)[0 .. 4];
print "heaviest: ", join(', ', map { "$_=$value_by_word{$_}" } @heavy), "\n";

(my $squeezed = $text) =~ s/(\d)\1+/<$1>/g;
my $replacements = () = $squeezed =~ /</g;
my $upper = join '', map { ucfirst } split /(\s+)/, substr($text, 0, 200);
print "squeezed: $replacements runs; upper: ", substr($upper, 0, 60), "\n";

my @records = map { { id => $_, score => ($_ * 7919) % 1009, name => sprintf('rec%05d', $_) } } 1 .. 30000;
my @sorted = sort { $b->{score} <=> $a->{score} || $a->{name} cmp $b->{name} } @records;
print "best: ", join(' ', map { "$_->{name}:$_->{score}" } @sorted[0 .. 4]), "\n";
my @by_name_length = sort { length($a) <=> length($b) or $a cmp $b } map { $_->{name} . ($_->{id} % 3 ? 'x' : '') } @records[0 .. 99];
print "names: @by_name_length[0 .. 5]\n";

my $churn = 0;
for my $round (1 .. 15) {
  my %transient = map { ("k$_" x (1 + $_ % 3)) => [($_) x ($_ % 5)] } 1 .. 8000;
  $churn += scalar(keys %transient) + scalar(map { @$_ } values %transient);
}
my @closures = map { my $n = $_; sub { return $n * $_[0] } } 1 .. 100;
my $closure_sum = 0;
$closure_sum += $_->(3) for @closures;
printf "churn %d, closures %d, %s\n", $churn, $closure_sum, sprintf('%08.3f|%-6s|%x', 3.14159, 'ok', 48879);
