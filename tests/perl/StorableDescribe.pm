package StorableDescribe;
# Describe a thawed Perl value as type-preserving JSON, for tests/test_storable.py.
#
# Perl's own view is what the Python reader must reproduce, so this looks at
# the SV flags (B::svref_2object) instead of stringifying: a string "12" and
# an integer 12 are different descriptions.  Containers get an "id" on first
# visit and later visits become {"t":"seen"}, so shared and cyclic structures
# can be compared.  Nothing here FETCHes from tied variables.
use strict;
use warnings;
use B ();
use Scalar::Util qw(blessed reftype refaddr);
use JSON::PP ();
no warnings 'experimental::builtin';
use Exporter 'import';
our @EXPORT_OK = qw(describe_root to_json %HOOKED);

our %HOOKED;    # refaddr => [frozen, @refs] recorded by the test classes' STORABLE_thaw
our %CODE_SRC;  # refaddr => source text, recorded by the corpus' $Storable::Eval

my ($next_id, %ids);

sub to_json { JSON::PP->new->canonical->utf8->encode($_[0]) }

sub describe_root {
    my ($root) = @_;
    ($next_id, %ids) = (0);
    my $type = reftype($root) // '';
    if (blessed($root) || $type eq 'HASH' || $type eq 'ARRAY' || $type eq 'CODE' || $type eq 'REGEXP') {
        return _sv(\$root);
    }
    return _sv($root);    # the root SV is a scalar: describe it, not a ref to it
}

sub _pv {
    my ($s) = @_;
    my $utf8 = utf8::is_utf8($s) ? 1 : 0;
    my $copy = $s;
    utf8::encode($copy) if $utf8;
    return { t => 'pv', utf8 => $utf8, hex => unpack('H*', $copy) };
}

sub _magic {
    my ($ref, $type) = @_;
    my $mg = eval { B::svref_2object($ref)->MAGIC };
    while ($mg) {
        return $mg if $mg->TYPE eq $type;
        $mg = $mg->MOREMAGIC;
    }
    return undef;
}

# $slot is a reference to the scalar to describe.
sub _sv {
    my ($slot) = @_;
    if (my $obj = tied $$slot) {
        return { t => 'tied', kind => 'scalar', obj => _sv(\$obj) };
    }
    if (my $mg = _magic($slot, 'p')) {    # tied hash element / tied array element
        my $obj = $mg->OBJ->object_2svref;
        if ($mg->LENGTH == -2) {          # HEf_SVKEY: the key is an SV
            my $key = $mg->PTR->object_2svref;
            return { t => 'tied', kind => 'key', obj => _sv($obj), key => _sv($key) };
        }
        return { t => 'tied', kind => 'idx', obj => _sv($obj), key => { t => 'int', v => '' . $mg->LENGTH } };
    }
    my $v = $$slot;
    if (ref(\$$slot) eq 'VSTRING') {
        my $mg = _magic($slot, 'V');
        return { t => 'vstring', literal => $mg->PTR, v => _pv($v) };
    }
    return _ref($v) if ref $v;
    return { t => 'undef' } unless defined $v;
    return { t => 'bool', v => ($v ? JSON::PP::true : JSON::PP::false) }
      if builtin::is_bool($v);
    my $flags = B::svref_2object($slot)->FLAGS;
    return _pv($v) if $flags & B::SVf_POK;
    return { t => 'int', v => "$v" } if $flags & B::SVf_IOK;
    return { t => 'num', v => sprintf('%.17g', $v) } if $flags & B::SVf_NOK;
    return _pv("$v");
}

sub _ref {
    my ($r) = @_;
    my $addr = refaddr($r);
    return { t => 'seen', id => $ids{$addr} } if exists $ids{$addr};
    my $id = $ids{$addr} = $next_id++;
    my $class = blessed($r);
    my $type = reftype($r);
    my $content;
    if ($class && exists $HOOKED{$addr}) {
        my ($frozen, @refs) = @{ $HOOKED{$addr} };
        $content = { t => 'hook', kind => lc($type), frozen => _pv($frozen),
                     refs => [ map { my $x = $_; _sv(\$x) } @refs ] };
    }
    elsif ($type eq 'HASH') {
        if (my $obj = tied %$r) {
            $content = { t => 'tied', kind => 'hash', obj => _sv(\$obj) };
        }
        else {
            # sort first: ids are handed out in visiting order
            my @keys = sort { $a->[0]{hex} cmp $b->[0]{hex} } map { [ _pv($_), $_ ] } keys %$r;
            my @items = map { [ $_->[0], _sv(\$r->{ $_->[1] }) ] } @keys;
            $content = { t => 'hash', items => \@items };
        }
    }
    elsif ($type eq 'ARRAY') {
        if (my $obj = tied @$r) {
            $content = { t => 'tied', kind => 'array', obj => _sv(\$obj) };
        }
        else {
            $content = { t => 'array', items => [ map { _sv(\$r->[$_]) } 0 .. $#$r ] };
        }
    }
    elsif ($type eq 'CODE') {
        my $src = $CODE_SRC{$addr};
        if (!defined $src) { require B::Deparse; $src = B::Deparse->new->coderef2text($r) }
        $content = { t => 'code', src => $src };
    }
    elsif ($type eq 'REGEXP') {
        my ($pat, $mods) = re::regexp_pattern($r);
        $content = { t => 'regexp', pat => $pat, flags => $mods };
        $class = undef if $class eq 'Regexp';
    }
    else {    # SCALAR, REF, VSTRING, LVALUE
        $content = _sv($r);
        if (!$class) {
            return { t => 'ref', id => $id, v => $content };
        }
    }
    return { t => 'obj', class => $class, id => $id, v => $content } if $class;
    $content->{id} = $id;
    return $content;
}

# ---- classes used by the corpus (must exist when Perl thaws) ----

package StorableTest::Tie;
sub TIEHASH   { my ($c, %a) = @_; bless {%a}, $c }
sub TIEARRAY  { my ($c, @a) = @_; bless [@a], $c }
sub TIESCALAR { my ($c, $v) = @_; bless \$v, $c }
sub FETCH     { "fetched" }
sub STORE     { }
sub FETCHSIZE { 3 }
sub STORESIZE { }
sub FIRSTKEY  { }
sub NEXTKEY   { }
sub EXISTS    { 1 }

package StorableTest::Hooked;
# STORABLE_freeze returns ($string, @refs) taken from the object's fields.
sub STORABLE_freeze {
    my ($self) = @_;
    my $t = Scalar::Util::reftype($self);
    my @parts = $t eq 'HASH' ? @{ $self->{parts} } : $t eq 'ARRAY' ? @$self : ($$self);
    return @parts;
}
sub STORABLE_thaw {
    my ($self, $cloning, $frozen, @refs) = @_;
    $StorableDescribe::HOOKED{ Scalar::Util::refaddr($self) } = [ $frozen, @refs ];
    return;
}

package StorableTest::Overloaded;
use overload '""' => sub { "overloaded" }, fallback => 1;

1;
